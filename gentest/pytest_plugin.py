"""pytest plugin: check a measure's randomization-test verdict in your own test suite.

Registered through the ``pytest11`` entry point, so it is active wherever gentest is
installed. It imports nothing heavy until a fixture is used.

    def test_my_measure_separates(gentest_score):
        assert gentest_score(my_measure).verdict == "separates"

``gentest_score(measure, expect=None)`` takes a @measure-decorated function, a registered name
or a Measure; it checks the measure's contract (finite, deterministic, leaves the weights
alone) on every run of a tiny natural/randomized suite and scores it. The result has
``verdict`` ("error" if the contract broke), ``sign_error``, ``auroc``, ``failures`` and
``score`` (the full MeasureScore). The runs are trained once and cached: in
``--gentest-cache DIR`` (or the ini option ``gentest_cache``), else in pytest's cache folder
(``.pytest_cache/d/gentest``); cache that folder between CI builds. ``--gentest-suite`` picks
the suite (default ``ci``: seconds on a CPU).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gentest", "randomization tests of generalization measures")
    group.addoption("--gentest-cache", default=None, metavar="DIR",
                    help="folder for gentest's cached tiny runs (default: pytest's cache folder)")
    group.addoption("--gentest-suite", default="ci", metavar="SUITE",
                    help="suite whose natural/randomized pairs measures are scored on (default: ci)")
    parser.addini("gentest_cache", "folder for gentest's cached tiny runs", default="")


def _cache_folder(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = config.getoption("gentest_cache") or config.getini("gentest_cache")
    if chosen:
        return Path(chosen)
    if getattr(config, "cache", None) is not None:
        return Path(config.cache.mkdir("gentest"))
    return tmp_path_factory.mktemp("gentest")  # -p no:cacheprovider: cache for this session only


@pytest.fixture(scope="session")
def gentest_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The run store holding the suite's trained natural/randomized runs (a RunStore)."""
    from gentest.store import RunStore

    return RunStore(_cache_folder(request.config, tmp_path_factory))


@pytest.fixture(scope="session")
def gentest_runs(request: pytest.FixtureRequest, gentest_store):
    """The suite's runs (natural and randomized twins), trained on the CPU on first use."""
    import torch

    from gentest.runner import train_missing
    from gentest.suites import load_suite

    suite = load_suite(request.config.getoption("gentest_suite"))
    return train_missing(suite.specs, gentest_store, torch.device("cpu"))


@pytest.fixture(scope="session")
def gentest_score(gentest_runs, gentest_store):
    """``gentest_score(measure, expect=None) -> CheckResult`` (see the module docstring)."""
    import torch

    from gentest.check import check_measure
    from gentest.registry import Measure, all_measures
    from gentest.runner import DataCache

    device, data = torch.device("cpu"), DataCache()

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

    def score(measure, expect: str | None = None):
        return check_measure(resolve(measure), gentest_runs, device, data, expect, gentest_store)

    return score
