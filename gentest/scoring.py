"""Scoring: does a generalization measure tell a natural network from its randomized twin?

Zhang et al. (ICLR 2017) showed that the same architecture, trained the same way, fits both
real data and randomized data (random labels, shuffled or random pixels, Gaussian inputs);
only the generalization gap tells the two apart. gentest trains such twins in *pairs* (same
settings, same seed, same initialization; only the randomization differs) and scores each
measure by whether it separates them. This module is that scoring; it is pure
Python/numpy/scipy and sees a run only as a :class:`ScoredRun`.

Definitions (``μ`` = the measure, ``g`` = the gap ``train_acc − test_acc``):

* **Orientation.** Measures are declared ``"higher-worse"`` (a larger value claims a larger
  gap, e.g. a norm or a bound) or ``"higher-better"`` (e.g. a margin). A ``higher-better``
  measure is negated first, so that everywhere below a larger oriented value claims worse
  generalization.

* **Pairs.** Within each ``pair_key`` group (runs that differ only in randomization), each
  natural run (``randomization == "none"``) is paired with each randomized run. Runs with
  different ``pair_key`` are never paired. A pair is scored only when the measure has a value
  on both twins.

* **Sign-error** (Dziugaite et al., "In search of robust measures of generalization",
  NeurIPS 2020, section 3; anchors.md section 4). For a pair,
  ``ℓ = (1 − sign(μ_nat − μ_rand) · sign(g_nat − g_rand)) / 2 ∈ {0, ½, 1}``: 0 if the measure
  orders the twins like the gap, 1 if it inverts them, ½ if it ties them (or, never in a
  healthy suite, if the gaps tie). ``sign_error`` is the mean of ``ℓ`` over scored pairs.
  Signs are taken by comparison (``(a > b) − (a < b)``), so ``±inf`` values order normally and
  two equal infinities tie.

  *Ties are exact.* ``n_ties`` counts pairs with ``μ_nat == μ_rand`` in exact floating-point
  equality, with no tolerance. A quantity that does not depend on the data (a parameter
  count, an architecture constant) is computed by the same operations on both twins and comes
  out bitwise equal, so it ties. A tolerance would have to pick a scale for every measure at
  once and would declare real but small differences to be ties. The flip side: a measure that
  is only *mathematically* invariant but reduces permuted data in a different order (say an
  input norm under ``shuffled-pixels``) can differ in the last bits between the twins and is
  then scored by that rounding noise. Such a measure should compute its invariant quantity in
  an order-independent way.

* **Environments.** Following Dziugaite et al.'s worst case over environments, a pair's
  environment is ``run.environment`` (architecture × training setting, taken from the natural
  twin) plus ``"/"`` plus the randomized twin's kind, with ``"(p=…)"`` for label corruption,
  e.g. ``"mnist1d/mlp/ab12/labels(p=0.5)"``. ``env_sign_errors`` maps each environment to its
  mean ``ℓ``; ``worst_env_sign_error`` is the largest and ``worst_env`` its name (the first in
  sorted order if several share the maximum).

* **AUROC.** The oriented measure as a classifier with randomized runs as positives and natural
  runs as negatives: ``P(μ_rand > μ_nat) + ½ P(μ_rand == μ_nat)`` over every natural ×
  randomized combination of runs that have a value (across all pair groups, not only within
  them). This is the Mann-Whitney ``U`` of the randomized sample divided by ``n_rand · n_nat``
  (``scipy.stats.mannwhitneyu(rand, nat).statistic / (n_rand · n_nat)``); it is computed here
  from the same comparison matrix the bootstrap reuses. 1 separates, 0 inverts, ½ is chance.
  ``None`` when either class has no value.

* **Kendall τ** (Jiang et al., "Fantastic generalization measures and where to find them",
  ICLR 2020). Only when the suite sweeps label corruption: among runs with randomization
  ``"none"`` or ``"labels"`` there are at least 3 distinct ``p`` values. Then ``kendall_tau``
  is Kendall's **tau-b** (``scipy.stats.kendalltau`` default: tie-corrected; equal to Jiang's
  τ-a when neither variable has ties) between the oriented measure and the gap over those runs
  that have a value. ``None`` without a sweep, and also where τ-b is undefined (fewer than two
  runs, or the measure or the gap constant over them).

* **Bootstrap 95 % intervals over seeds.** The distinct seeds of runs with a value are
  resampled with replacement ``n_boot`` times (a ``numpy.random.Generator`` seeded by
  ``seed``; no global random state). Each resample takes every pair / run whose seed was
  drawn, as many times as it was drawn, and recomputes the mean sign-error and the AUROC. The
  interval is the (2.5, 97.5) percentile of the resampled statistics. With one seed it is
  degenerate (``lo == hi``). ``score_all`` uses the same ``seed`` for every measure, so all
  measures see the same resamples.

* **Verdict** (thresholds in :data:`THRESHOLDS`):

  - ``"error"``: the measure errored (value ``None``, or NaN) on at least one run, or no pair
    could be scored. Sign-error and the rest are still reported over the pairs that could be
    scored.
  - ``"separates"``: ``sign_error <= 0.1``.
  - ``"inverts"``: ``sign_error >= 0.9`` (it orders the twins, but the wrong way round; a
    declared orientation may be wrong).
  - ``"fails"``: anything between: it ties the twins or orders them no better than chance.

  ``reason`` says why in a short phrase ("orders 9 of 9 pairs like the gap").

* **Controls** (DESIGN.md). ``control.gap`` (the gap itself, an oracle) must have sign-error 0
  and separate; ``control.param_count`` (a property of the architecture alone) must tie every
  pair and fail. If either does not, the suite is broken (e.g. twins with equal gaps, or twins
  with different architectures), not the measures: see :func:`controls_ok`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from gentest.leaderboard import MeasureScore

# Verdict thresholds on the mean sign-error (inclusive); the report prints them.
THRESHOLDS: dict[str, float] = {
    "separates_max_sign_error": 0.1,
    "inverts_min_sign_error": 0.9,
}
NOT_APPLICABLE = "n/a"
VERDICTS = ("separates", "inverts", "fails", "error", NOT_APPLICABLE)  # also the leaderboard's sort order
ORIENTATIONS = ("higher-worse", "higher-better")
NATURAL = "none"
LABELS = "labels"
CI_PERCENTILES = (2.5, 97.5)
MIN_SWEEP_LEVELS = 3  # distinct p among "none"/"labels" runs for Kendall tau to be computed
CONTROL_GAP = "control.gap"
CONTROL_PARAM_COUNT = "control.param_count"


@dataclass(frozen=True)
class ScoredRun:
    """One run as scoring sees it."""

    key: str
    pair_key: str  # equal for runs that differ only in randomization
    randomization: str  # "none" for the natural twin; else "labels", "shuffled-pixels", ...
    p: float  # corruption level (0 for none, label-corruption probability for labels, else 1)
    seed: int
    gap: float  # train_acc - test_acc
    environment: str  # architecture x training setting, e.g. "mnist1d/mlp/<settings-hash>"

    @property
    def is_natural(self) -> bool:
        return self.randomization == NATURAL

    def kind(self) -> str:
        """The randomization with its level where it has one, e.g. ``labels(p=0.5)``."""
        return self.randomization + (f"(p={self.p:g})" if self.randomization == LABELS else "")


def environment_of(natural: ScoredRun, randomized: ScoredRun) -> str:
    """The Dziugaite environment of a pair: the twins' setting and the randomization kind."""
    return f"{natural.environment}/{randomized.kind()}"


def pair_runs(runs: Sequence[ScoredRun]) -> list[tuple[ScoredRun, ScoredRun]]:
    """Every (natural, randomized) pair: each natural run × each randomized run of its group.

    Groups and pairs come out in the order of ``runs``.
    """
    groups: dict[str, list[ScoredRun]] = defaultdict(list)
    for r in runs:
        groups[r.pair_key].append(r)
    out = []
    for group in groups.values():
        naturals = [r for r in group if r.is_natural]
        randomized = [r for r in group if not r.is_natural]
        out.extend((n, r) for n in naturals for r in randomized)
    return out


def _sign(a: float, b: float) -> int:
    return (a > b) - (a < b)


def _check_runs(runs: Sequence[ScoredRun]) -> None:
    seen = set()
    for r in runs:
        if r.key in seen:
            raise ValueError(f"run {r.key!r} appears twice")
        seen.add(r.key)
        if not math.isfinite(r.gap):
            raise ValueError(f"run {r.key!r} has a non-finite gap {r.gap!r}")


def _oriented_values(
    runs: Sequence[ScoredRun], values: Mapping[str, float | None], orientation: str
) -> dict[str, float]:
    """Run key -> oriented value, for runs where the measure has a value (not None, not NaN)."""
    sign = -1.0 if orientation == "higher-better" else 1.0
    out = {}
    for r in runs:
        v = values.get(r.key)
        if v is None:
            continue
        v = float(v)
        if math.isnan(v):
            continue
        out[r.key] = sign * v
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def score_measure(
    name: str,
    family: str,
    orientation: str,
    runs: list[ScoredRun],
    values: dict[str, float | None],
    n_boot: int = 1000,
    seed: int = 0,
    not_applicable: Mapping[str, str] | None = None,
) -> MeasureScore:
    """Score one measure over a suite's runs (see the module docstring for every definition).

    ``values[run.key]`` is the measure on that run, or ``None`` (or missing, or NaN) where it
    errored; those runs count in ``errors`` and their pairs are skipped. Runs in
    ``not_applicable`` (run key -> reason) are left out altogether; if that is every run the
    verdict is "n/a" with the reason.
    """
    not_applicable = dict(not_applicable or {})
    if not_applicable:
        applicable = [r for r in runs if r.key not in not_applicable]
        reason = next(iter(not_applicable.values()))
        if not applicable:
            return MeasureScore(
                name=name, family=family, orientation=orientation, n_pairs=0, sign_error=None,
                sign_error_ci=None, worst_env_sign_error=None, worst_env=None, env_sign_errors={},
                auroc=None, auroc_ci=None, kendall_tau=None, verdict=NOT_APPLICABLE, errors=0,
                reason=f"does not apply: {reason}",
            )
        score = score_measure(name, family, orientation, applicable, values, n_boot, seed)
        score.reason += f"; does not apply to {len(not_applicable)} of {len(runs)} runs ({reason})"
        return score
    if orientation not in ORIENTATIONS:
        raise ValueError(f"measure {name!r}: orientation must be one of {ORIENTATIONS}, not {orientation!r}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, not {n_boot}")
    _check_runs(runs)
    mu = _oriented_values(runs, values, orientation)
    errors = len(runs) - len(mu)

    # Pairs and their sign-errors, kept as 2ℓ ∈ {0, 1, 2} so sums stay exact integers.
    loss2: list[int] = []
    pair_seeds: list[int] = []
    envs: list[str] = []
    n_ties = n_gap_ties = 0
    for nat, rnd in pair_runs(runs):
        if nat.key not in mu or rnd.key not in mu:
            continue
        s_mu = _sign(mu[nat.key], mu[rnd.key])
        s_gap = _sign(nat.gap, rnd.gap)
        loss2.append(1 - s_mu * s_gap)
        pair_seeds.append(nat.seed)
        envs.append(environment_of(nat, rnd))
        n_ties += s_mu == 0
        n_gap_ties += s_mu != 0 and s_gap == 0
    n_pairs = len(loss2)

    sign_error = sum(loss2) / (2 * n_pairs) if n_pairs else None
    env_loss: dict[str, list[int]] = defaultdict(list)
    for env, l2 in zip(envs, loss2):
        env_loss[env].append(l2)
    env_sign_errors = {env: sum(ls) / (2 * len(ls)) for env, ls in sorted(env_loss.items())}
    worst_env = max(env_sign_errors, key=env_sign_errors.__getitem__) if env_sign_errors else None
    worst_env_sign_error = env_sign_errors[worst_env] if worst_env is not None else None

    # AUROC from the comparison matrix C[i, j] = 1 / ½ / 0 for randomized i vs natural j.
    rand_runs = [r for r in runs if not r.is_natural and r.key in mu]
    nat_runs = [r for r in runs if r.is_natural and r.key in mu]
    auroc = None
    comparisons = None
    if rand_runs and nat_runs:
        x = np.array([mu[r.key] for r in rand_runs])
        y = np.array([mu[r.key] for r in nat_runs])
        comparisons = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        auroc = float(comparisons.sum() / comparisons.size)

    kendall_tau = _kendall_tau(runs, mu)

    sign_error_ci, auroc_ci = _bootstrap(
        runs, mu, np.array(loss2, dtype=float) / 2, pair_seeds, rand_runs, nat_runs, comparisons, n_boot, seed
    )

    verdict, reason = _verdict(
        sign_error, n_pairs, loss2, n_ties, n_gap_ties, errors, len(runs)
    )
    return MeasureScore(
        name=name,
        family=family,
        orientation=orientation,
        n_pairs=n_pairs,
        sign_error=sign_error,
        sign_error_ci=sign_error_ci,
        worst_env_sign_error=worst_env_sign_error,
        worst_env=worst_env,
        env_sign_errors=env_sign_errors,
        auroc=auroc,
        auroc_ci=auroc_ci,
        kendall_tau=kendall_tau,
        verdict=verdict,
        errors=errors,
        n_ties=n_ties,
        reason=reason,
    )


def sweeps_label_corruption(runs: Sequence[ScoredRun]) -> bool:
    """Whether ``runs`` sweep p: at least 3 distinct p among "none" and "labels" runs."""
    levels = {r.p for r in runs if r.randomization in (NATURAL, LABELS)}
    return len(levels) >= MIN_SWEEP_LEVELS


def _kendall_tau(runs: Sequence[ScoredRun], mu: Mapping[str, float]) -> float | None:
    if not sweeps_label_corruption(runs):
        return None
    swept = [r for r in runs if r.randomization in (NATURAL, LABELS) and r.key in mu]
    x = [mu[r.key] for r in swept]
    y = [r.gap for r in swept]
    # tau-b is 0/0 when either variable is constant; say None rather than NaN.
    if len(swept) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    tau = float(stats.kendalltau(x, y).statistic)  # variant="b" (the default)
    return tau if math.isfinite(tau) else None


def _percentile_interval(samples: np.ndarray) -> tuple[float, float] | None:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    lo, hi = np.percentile(samples, CI_PERCENTILES)
    return float(lo), float(hi)


def _bootstrap(
    runs: Sequence[ScoredRun],
    mu: Mapping[str, float],
    losses: np.ndarray,
    pair_seeds: list[int],
    rand_runs: list[ScoredRun],
    nat_runs: list[ScoredRun],
    comparisons: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """Percentile intervals of mean sign-error and AUROC when the seeds are resampled."""
    seeds = sorted({r.seed for r in runs if r.key in mu})
    if n_boot == 0 or not seeds:
        return None, None
    index = {s: i for i, s in enumerate(seeds)}
    n_seeds = len(seeds)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    # counts[b, s]: how many times resample b drew seed s (its weight, multiplicity included).
    flat = (draws + n_seeds * np.arange(n_boot)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_seeds).reshape(n_boot, n_seeds).astype(float)

    se_ci = None
    if losses.size:
        w = counts[:, [index[s] for s in pair_seeds]]
        with np.errstate(invalid="ignore", divide="ignore"):
            se_ci = _percentile_interval((w @ losses) / w.sum(axis=1))

    auroc_ci = None
    if comparisons is not None:
        w_rand = counts[:, [index[r.seed] for r in rand_runs]]
        w_nat = counts[:, [index[r.seed] for r in nat_runs]]
        num = np.einsum("bi,ij,bj->b", w_rand, comparisons, w_nat)
        with np.errstate(invalid="ignore", divide="ignore"):
            auroc_ci = _percentile_interval(num / (w_rand.sum(axis=1) * w_nat.sum(axis=1)))
    return se_ci, auroc_ci


def _verdict(
    sign_error: float | None,
    n_pairs: int,
    loss2: list[int],
    n_ties: int,
    n_gap_ties: int,
    errors: int,
    n_runs: int,
) -> tuple[str, str]:
    if errors or not n_pairs:
        if errors:
            reason = f"errored on {errors} of {_plural(n_runs, 'run')}"
            return "error", reason + ("; no pair could be scored" if not n_pairs else "")
        return "error", "no natural/randomized pair to score"
    assert sign_error is not None
    right, wrong = loss2.count(0), loss2.count(2)
    extras = []
    if n_ties:
        extras.append(f"ties {n_ties}")
    if n_gap_ties:
        extras.append(f"{_plural(n_gap_ties, 'pair')} with equal gaps")
    if sign_error <= THRESHOLDS["separates_max_sign_error"]:
        head = f"orders {right} of {_plural(n_pairs, 'pair')} like the gap"
        if wrong:
            extras.insert(0, f"inverts {wrong}")
        return "separates", ", ".join([head, *extras])
    if sign_error >= THRESHOLDS["inverts_min_sign_error"]:
        head = f"inverts {wrong} of {_plural(n_pairs, 'pair')}"
        if right:
            extras.insert(0, f"orders {right} like the gap")
        return "inverts", ", ".join([head, *extras])
    if n_ties == n_pairs:
        return "fails", f"ties every pair ({n_ties} of {n_pairs})"
    head = f"orders {right} of {_plural(n_pairs, 'pair')} like the gap, inverts {wrong}"
    return "fails", ", ".join([head, *extras]) + (
        f": sign-error {sign_error:.2f} is neither <= {THRESHOLDS['separates_max_sign_error']:g}"
        f" nor >= {THRESHOLDS['inverts_min_sign_error']:g}"
    )


def score_all(
    measures: list[tuple[str, str, str]],
    runs: list[ScoredRun],
    values_by_measure: dict[str, dict[str, float | None]],
    n_boot: int = 1000,
    seed: int = 0,
    not_applicable_by_measure: Mapping[str, Mapping[str, str]] | None = None,
) -> list[MeasureScore]:
    """Score every ``(name, family, orientation)``; best first.

    Sorted by verdict (separates, inverts, fails, error), then sign-error ascending (none
    last), then name. A measure missing from ``values_by_measure`` errored on every run.
    """
    scores = [
        score_measure(
            name, family, orientation, runs, values_by_measure.get(name, {}), n_boot=n_boot, seed=seed,
            not_applicable=(not_applicable_by_measure or {}).get(name),
        )
        for name, family, orientation in measures
    ]
    return sorted(scores, key=_rank)


def _rank(s: MeasureScore) -> tuple[int, float, str]:
    return (VERDICTS.index(s.verdict), s.sign_error if s.sign_error is not None else math.inf, s.name)


def _error_phrase(s: MeasureScore) -> str:
    return f"{s.name} " + (s.reason if s.reason.startswith("errored") else f"has {s.reason}")


def controls_ok(scores: list[MeasureScore]) -> tuple[bool, str]:
    """Check the built-in controls; ``(True, "")`` or ``(False, one sentence why)``.

    ``control.gap`` must separate with sign-error exactly 0; ``control.param_count`` must tie
    every pair (``n_ties == n_pairs > 0``) and so fail. Otherwise the suite is broken.
    """
    by_name = {s.name: s for s in scores}
    missing: list[str] = []
    broken: list[str] = []

    gap = by_name.get(CONTROL_GAP)
    if gap is None:
        missing.append(f"{CONTROL_GAP} was not evaluated")
    elif gap.verdict == "error":
        broken.append(_error_phrase(gap))
    elif not (gap.sign_error == 0 and gap.verdict == "separates"):
        what = f"{CONTROL_GAP} has sign-error {gap.sign_error:.3g} instead of 0"
        if gap.n_ties:
            what += f" ({gap.n_ties} of {_plural(gap.n_pairs, 'pair')} have equal gaps)"
        else:
            what += f" ({gap.reason})"
        broken.append(what)

    pc = by_name.get(CONTROL_PARAM_COUNT)
    if pc is None:
        missing.append(f"{CONTROL_PARAM_COUNT} was not evaluated")
    elif pc.verdict == "error":
        broken.append(_error_phrase(pc))
    elif not (pc.n_pairs > 0 and pc.n_ties == pc.n_pairs and pc.verdict == "fails"):
        broken.append(
            f"{CONTROL_PARAM_COUNT} differs between twins in {pc.n_pairs - pc.n_ties} of "
            f"{_plural(pc.n_pairs, 'pair')} (twins must share the architecture)"
        )

    if broken:
        return False, "; ".join(broken + missing) + ", so the suite, not the measures, is broken."
    if missing:
        return False, "; ".join(missing) + ", so nothing checks that the suite itself is sound."
    return True, ""
