"""pytest plugin: check a measure's randomization-test verdict in your own test suite.

Registered through the ``pytest11`` entry point, so it is active wherever gentest is
installed. It imports nothing heavy until a fixture is used.

    def test_my_measure_separates(gentest_score):
        assert gentest_score(my_measure).agrees_with("separates")

``gentest_score(measure, expect=None)`` takes a @measure-decorated function, a registered name
or a Measure; it checks the measure's contract (finite, deterministic, leaves the weights
alone) on every run of a tiny natural/randomized suite and scores it. The result has
``verdict`` ("error" if the contract broke), ``sign_error``, ``auroc``, ``failures`` and
``score`` (the full MeasureScore). The verdict is a string that carries its ``reason``: a
failed ``assert result.verdict == "separates"`` shows why the verdict is what it is. On the tiny
default suite (two pairs) the verdict is ``inconclusive`` by rule (a 95 % interval under 0.1 takes
about 36 effective pairs), so assert ``result.agrees_with("separates")``: that verdict, or a
sample that agrees with it (:func:`gentest.check.agrees`); or ``expect="separates"`` and
``result.ok``.

The runs live in the same run store as ``gentest check`` uses, so a project trains them once:
``--gentest-cache DIR`` (or the ini option ``gentest_cache``) if given, else ``$GENTEST_STORE``,
else ``.gentest`` in pytest's rootdir (the project folder, where ``gentest check`` is run).
Cache that folder between CI builds. ``--gentest-suite`` picks the suite (default ``ci``:
seconds on a CPU).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gentest", "randomization tests of generalization measures")
    group.addoption("--gentest-cache", default=None, metavar="DIR",
                    help="run store for gentest's tiny runs (default: $GENTEST_STORE, else .gentest in the "
                         "rootdir: the store `gentest check` uses)")
    group.addoption("--gentest-suite", default="ci", metavar="SUITE",
                    help="suite whose natural/randomized pairs measures are scored on (default: ci)")
    parser.addini("gentest_cache", "run store for gentest's tiny runs (default: $GENTEST_STORE, else .gentest)",
                  default="")


def store_folder(config: pytest.Config) -> Path:
    """The run store: the option, the ini setting, $GENTEST_STORE (relative to the working
    directory, as for the gentest command), else ``.gentest`` in the rootdir."""
    chosen = config.getoption("gentest_cache") or config.getini("gentest_cache") or os.environ.get("GENTEST_STORE")
    return Path(chosen) if chosen else Path(config.rootpath) / ".gentest"


def pytest_report_header(config: pytest.Config) -> str:
    return f"gentest: store {store_folder(config)} (suite {config.getoption('gentest_suite')})"


class Verdict(str):
    """A verdict ("separates", "inverts", "inconclusive", "unreliable", "chance", "error", "n/a")
    that carries its reason.

    It compares and prints as the plain verdict; its repr, and pytest's explanation of a
    failed comparison with it, add the reason."""

    reason: str

    def __new__(cls, verdict: str, reason: str) -> Verdict:
        self = super().__new__(cls, verdict)
        self.reason = reason
        return self

    def __repr__(self) -> str:
        return f"{str.__repr__(self)} ({self.reason})"


@pytest.hookimpl(tryfirst=True)
def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object) -> list[str] | None:
    """``assert result.verdict == "separates"`` fails with the verdict's reason, not a bare diff."""
    verdict = left if isinstance(left, Verdict) else right if isinstance(right, Verdict) else None
    if verdict is None or op not in ("==", "!="):
        return None
    plain = [str.__repr__(side) if isinstance(side, str) else repr(side) for side in (left, right)]
    return [f"{plain[0]} {op} {plain[1]}", f"gentest verdict {str(verdict)!r}: {verdict.reason}"]


@pytest.fixture(scope="session")
def gentest_store(request: pytest.FixtureRequest):
    """The run store holding the suite's trained natural/randomized runs (a RunStore)."""
    from gentest.store import RunStore

    return RunStore(store_folder(request.config))


@pytest.fixture(scope="session")
def gentest_runs(request: pytest.FixtureRequest, gentest_store):
    """The suite's runs (natural and randomized twins), trained on the CPU on first use."""
    import torch

    from gentest.pipeline import remember_suite
    from gentest.runner import train_missing
    from gentest.suites import load_suite

    suite = load_suite(request.config.getoption("gentest_suite"))
    remember_suite(gentest_store, suite)  # so that `gentest report` knows the suite of these runs
    return train_missing(suite.specs, gentest_store, torch.device("cpu"))


@pytest.fixture(scope="session")
def gentest_score(gentest_runs, gentest_store):
    """``gentest_score(measure, expect=None) -> CheckResult`` (see the module docstring)."""
    import dataclasses

    import torch

    from gentest.check import CheckResult, check_measure
    from gentest.registry import Measure, all_measures
    from gentest.runner import DataCache

    device, data = torch.device("cpu"), DataCache()

    class ScoredMeasure(CheckResult):
        @property
        def verdict(self) -> Verdict:
            plain = CheckResult.verdict.fget(self)
            if plain == "error":
                return Verdict(plain, "; ".join(self.failures) or self.score.reason)
            sign = f"sign-error {self.score.sign_error:.2f} over {self.score.n_pairs} pairs" \
                if self.score.sign_error is not None else f"{self.score.n_pairs} pairs scored"
            return Verdict(plain, f"{sign}: {self.measure.name} {self.score.reason}")

        def __repr__(self) -> str:
            return CheckResult.__repr__(self).replace(repr(self.verdict), str.__repr__(self.verdict), 1)

    def resolve(measure) -> Measure:
        if isinstance(measure, Measure):
            return measure
        available = all_measures()
        if isinstance(measure, str):
            if measure not in available:
                raise LookupError(f"no measure named {measure!r} is registered")
            return available[measure]
        for m in available.values():
            if m.fn is measure:
                return m
        raise LookupError(f"{measure!r} is not registered: decorate it with @gentest.measure(...)")

    def score(measure, expect: str | None = None) -> ScoredMeasure:
        result = check_measure(resolve(measure), gentest_runs, device, data, expect, gentest_store)
        return ScoredMeasure(**{f.name: getattr(result, f.name) for f in dataclasses.fields(result)})

    return score
