"""Issue 17's faster estimators against today's (tests/reference_estimators.py) on the ``ci`` runs.

Deterministic values must be equal (bit for bit). A stochastic estimate may move, within the
uncertainties recorded: the trace (Hutch++ for Hutchinson, new probes) within Z = 3 combined
standard errors, sqrt(se_old² + se_new²), with a standard error no larger than Hutchinson's;
the tolerance-stopped searches (σ, σ′, α′) take the first midpoints of the full-depth ones with
the same draws, so the old value lies inside the new one's recorded bracket (no z needed:
the bracket is a bound, not a standard error). The stability retrain must be the same model.
"""

from __future__ import annotations

import math

import pytest
import torch

import reference_estimators as ref
from gentest.context import MeasureContext
from gentest.evaluation import run_cache
from gentest.registry import all_measures
from gentest.runner import DataCache, train_missing, training_data
from gentest.stability import retrain_spec
from gentest.store import RunStore
from gentest.suites import load_suite
from gentest.training import train

CPU = torch.device("cpu")
Z = 3.0  # standard errors allowed between two stochastic estimates of the same quantity


@pytest.fixture(scope="module")
def ci_runs(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("ci-references") / "store")
    data = DataCache()
    runs = train_missing(load_suite("ci").specs, store, CPU, data)
    return [(run, run_cache(run, data, CPU)) for run in runs], data


def measured(name: str, cache) -> tuple[float, dict]:
    ctx = MeasureContext(cache, name)
    return all_measures()[name].fn(ctx), ctx.recorded


def test_hessian_trace_within_the_recorded_errors_and_lanczos_values_equal(ci_runs):
    runs, _ = ci_runs
    for run, cache in runs:
        old, old_se, old_hvps = ref.trace(MeasureContext(cache, "reference"))
        new, rec = measured("hessian.trace", cache)
        assert rec["uncertainty"] <= old_se, run.spec.label()
        assert abs(new - old) <= Z * math.hypot(old_se, rec["uncertainty"]), run.spec.label()
        top, rank = ref.lanczos_values(MeasureContext(cache, "reference"))
        assert measured("hessian.top_eigenvalue", cache)[0] == top
        assert measured("hessian.numerical_rank", cache)[0] == rank


@pytest.mark.parametrize("magnitude", [False, True], ids=["sigma", "mag_sigma"])
def test_pacbayes_sigma_in_the_recorded_bracket(ci_runs, magnitude):
    runs, _ = ci_runs
    name = "pacbayes.mag_flatness" if magnitude else "pacbayes.flatness"
    for run, cache in runs:
        old = ref.sigma_search(MeasureContext(cache, "reference"), ref.PACBAYES_MAG_EPS if magnitude else None)
        value, rec = measured(name, cache)
        assert rec["sigma"] <= old.value <= rec["sigma_upper"], run.spec.label()
        assert abs(value - old.value**-2) <= rec["uncertainty"] * (1 + 1e-12), run.spec.label()
        assert rec["bisection_steps"] <= old.steps


@pytest.mark.parametrize("magnitude", [False, True], ids=["alpha", "mag_alpha"])
def test_sharpness_alpha_in_the_recorded_bracket(ci_runs, magnitude):
    runs, _ = ci_runs
    name = "sharpness.mag_flatness" if magnitude else "sharpness.worst_case_flatness"
    for run, cache in runs:
        old = ref.alpha_search(MeasureContext(cache, "reference"), magnitude)
        value, rec = measured(name, cache)
        assert rec["alpha"] <= old.value <= rec["alpha_upper"], run.spec.label()
        assert abs(value - old.value**-2) <= rec["uncertainty"] * (1 + 1e-12), run.spec.label()


def test_keskar_epsilon_is_unchanged(ci_runs):
    runs, _ = ci_runs
    for _, cache in runs:
        name = "sharpness.keskar_epsilon"
        assert measured(name, cache)[0] == ref.keskar_epsilon(MeasureContext(cache, name))


def test_stability_retrain_is_the_same_model_without_the_curve(ci_runs):
    """The retrain that checks only its stopping rule takes the same steps and stops after the
    same epoch as the training that evaluates both splits after every epoch (the reference)."""
    runs, data = ci_runs
    for run, _ in runs:
        spec = retrain_spec(run.spec, 10)
        randomized = training_data(spec, data)  # with the replaced examples
        fast = train(spec, randomized.data, CPU)
        full = train(spec, randomized.data, CPU, keep_curve=True)
        assert "test_acc" not in fast.curve[1] and "test_acc" in full.curve[1]
        for key in ("epochs", "steps", "fitted", "train_acc", "train_loss", "test_acc", "test_loss"):
            assert fast.metrics[key] == full.metrics[key], key
        full_state = full.model.state_dict()
        assert all(torch.equal(v, full_state[k]) for k, v in fast.model.state_dict().items())
