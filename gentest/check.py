"""Checking one measure: its contract on every run of a small suite, then its verdict.

The contract, checked on fresh contexts (cached values are not trusted here: the point is to
check the code as it is now):

- **finite**: a finite float on every run (not an exception, NaN, ±inf or a non-scalar);
- **deterministic**: the same value, bit for bit, when computed twice with the same seed;
- **pure**: the model's weights, the shared data and cached tensors, and torch's global
  settings (default dtype, grad mode, …) unchanged afterwards;
- **returns**: it returns its value; ``sys.exit`` or a ``KeyboardInterrupt`` of its own is a
  failure, not an exit (see :func:`gentest.evaluation.call_isolated`);
- **declared**: a family and an orientation, so the value can be scored (the registry refuses
  a measure without them, so a measure that reaches the check has them).

Then the measure is scored over the suite's natural/randomized pairs (see
:mod:`gentest.scoring`) and its verdict compared with the expectation. On a small suite (``ci``
has two pairs) the honest verdict is ``inconclusive``: a 95 % interval under 0.1 takes about 36
effective pairs. The check then passes when the sample agrees with the expectation (the point
estimate in the expected range, the interval not excluding it; :func:`agrees`); a definite verdict
comes from a board (``gentest evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from gentest.errors import GentestError
from gentest.evaluation import call_isolated, global_seed, run_cache
from gentest.leaderboard import MeasureScore
from gentest.pipeline import environment_names, run_settings, test_size
from gentest.registry import Measure, all_measures, load_plugin
from gentest.runner import DataCache
from gentest.scoring import DEFINITE_VERDICTS, INCONCLUSIVE, ScoredRun, consistent_with, recorded_uncertainty, score_measure
from gentest.store import Run, RunStore


@dataclass
class RunCheck:
    run: Run
    value: float | None
    seconds: float
    problem: str | None = None  # the broken rule, in words, or None
    not_applicable: str | None = None
    uncertainty: object = None  # the standard error the measure recorded, if it did


@dataclass
class CheckResult:
    measure: Measure
    runs: list[RunCheck]
    score: MeasureScore
    expect: str | None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> str:
        """The scored verdict, or "error" when the measure broke its contract on some run."""
        return "error" if any(c.problem for c in self.runs) else self.score.verdict

    @property
    def sign_error(self) -> float | None:
        return self.score.sign_error

    def agrees_with(self, expected: str) -> bool:
        """The contract held and the score agrees with ``expected``: that verdict, or on a suite
        too small for any verdict, a sample that does not contradict it (:func:`agrees`)."""
        return self.verdict != "error" and agrees(self.score, expected)

    @property
    def auroc(self) -> float | None:
        return self.score.auroc

    def __repr__(self) -> str:  # what pytest shows when an assertion on the result fails
        lines = [f"<gentest {self.measure.name}: verdict {self.verdict!r}, sign-error {self.sign_error}, {self.score.reason}"]
        lines += [f"  {failure}" for failure in self.failures]
        return "\n".join(lines) + ">"


def resolve_measure(ref: str, plugins: list[str] = ()) -> Measure:
    """A registered name, or ``path.py:function`` naming a @measure-decorated function."""
    if ":" in ref and ref.split(":", 1)[0].endswith(".py"):
        path, function = ref.rsplit(":", 1)
        load_plugin(path)
        resolved = Path(path).resolve()
        found = [
            m for m in all_measures(plugins).values()
            if m.source == f"plugin {resolved}" and m.fn.__name__ == function
        ]
        if not found:
            raise GentestError(
                f"{path} defines no function '{function}' decorated with @measure "
                "(it needs a name, a family and an orientation)"
            )
        return found[0]
    available = all_measures(plugins)
    if ref not in available:
        from gentest.registry import select

        select([ref], available)  # raises with suggestions
    return available[ref]


def measure_runs(
    measure: Measure, runs: list[Run], device: torch.device, data: DataCache, store: RunStore | None = None,
    repeats: int = 2,
) -> list[RunCheck]:
    """Compute ``measure`` ``repeats`` times per run on fresh contexts and check the contract.
    With a store, stability retrains are trained into (or reused from) it."""
    checks = []
    for run in runs:
        cache = run_cache(run, data, device, store)
        # Each repeat seeds torch's global generators differently: a value that depends on
        # them (rather than on ctx.generator) shows up as not deterministic.
        results = [
            call_isolated(measure, cache, rng_seed=global_seed(run.key, measure.name) + i) for i in range(repeats)
        ]
        first = results[0]
        check = RunCheck(run, first.value, sum(r.seconds for r in results) / len(results),
                         uncertainty=recorded_uncertainty(first.extra))
        if first.not_applicable:
            check.not_applicable = first.error
        elif first.error is not None:
            check.problem = _rule_for(first.error)
        elif any(r.value != first.value for r in results[1:]):
            other = next(r.value for r in results[1:] if r.value != first.value)
            check.problem = (
                f"not deterministic: {first.value!r} then {other!r} with the same seed "
                "(draw randomness from ctx.generator only)"
            )
        checks.append(check)
    return checks


# Errors that already name the rule a measure broke (see gentest.evaluation.call_isolated).
_RULE_ERRORS = ("changed torch's", "modified ", "timed out")


def _rule_for(error: str) -> str:
    if error.startswith("modified the model's weights"):
        return "changed the model's weights (measures must leave ctx.model unchanged)"
    if error.startswith("called sys.exit"):
        return f"exited: {error} (a measure must return its value, not end the process)"
    if error.startswith("returned") and "finite" in error:
        return f"not a finite float: {error}"
    if error.startswith("TypeError: returned"):
        return f"not a scalar: {error.removeprefix('TypeError: ')}"
    if error.startswith(_RULE_ERRORS):
        return error
    if error.startswith("raised "):
        return error
    return f"raised {error}"


def check_measure(
    measure: Measure,
    runs: list[Run],
    device: torch.device,
    data: DataCache,
    expect: str | None = "separates",
    store: RunStore | None = None,
) -> CheckResult:
    """The contract on every run, then the verdict against ``expect`` (None: no expectation)."""
    if expect is not None and expect not in DEFINITE_VERDICTS:
        raise GentestError(f"--expect must be one of {', '.join(DEFINITE_VERDICTS)}, got '{expect}'")
    checks = measure_runs(measure, runs, device, data, store)
    score = score_runs(measure, runs, {c.run.key: c.value for c in checks},
                       {c.run.key: c.not_applicable for c in checks if c.not_applicable},
                       {c.run.key: c.uncertainty for c in checks if c.uncertainty is not None})
    failures = [f"{c.run.spec.label()}: {c.problem}" for c in checks if c.problem]
    if all(c.not_applicable for c in checks):
        failures.append(f"does not apply to any run of the suite ({checks[0].not_applicable})")
    elif expect is not None and not failures and not agrees(score, expect):
        failures.append(f"expected '{expect}' but the verdict is '{score.verdict}': {measure.name} {score.reason}")
    return CheckResult(measure, checks, score, expect, failures)


def agrees(score: MeasureScore, expect: str) -> bool:
    """The verdict is ``expect``, or it is ``inconclusive`` and the sample agrees with ``expect``
    (:func:`gentest.scoring.consistent_with`): a small suite such as ``ci`` has too few pairs
    for any definite verdict, so the check asks that nothing in it contradicts the expectation."""
    if score.verdict == expect:
        return True
    return score.verdict == INCONCLUSIVE and consistent_with(expect, score.sign_error, score.sign_error_ci)


def score_runs(
    measure: Measure, runs: list[Run], values: dict[str, float | None], not_applicable: dict[str, str] | None = None,
    uncertainties: dict[str, object] | None = None,
) -> MeasureScore:
    """Score as the leaderboard does: environments, settings (for Psi) and recorded uncertainties."""
    envs = environment_names([r.spec for r in runs])
    scored = [
        ScoredRun(r.key, r.spec.pair_key, r.spec.randomization_name, r.spec.p, r.spec.seed, r.metrics["gap"], envs[r.key],
                  settings=run_settings(r.spec), n_test=test_size(r))
        for r in runs
    ]
    return score_measure(measure.name, measure.family, measure.orientation, scored, values,
                         not_applicable=not_applicable, uncertainties=uncertainties)
