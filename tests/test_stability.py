"""Stability retraining replaces exactly k examples with fresh draws, is cached like any run,
and the stability measures match a direct computation on the stored retrain."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import measures.stability as stability
from gentest.context import MeasureContext, RunCache, rebuild_model
from gentest.errors import NotApplicable
from gentest.evaluation import evaluate
from gentest.registry import _MEASURES
from gentest.runner import DataCache, training_data
from gentest.spec import RunSpec
from gentest.stability import retrain_spec

CPU = torch.device("cpu")
NAMES = ["stability.replace_loss_change", "stability.replace_param_distance", "stability.replace_test_disagreement"]


def test_replace_k_zero_keeps_every_existing_key():
    spec = RunSpec(dataset="mnist1d", model="mlp", seed=1)
    assert "replace_k" not in spec.to_dict()
    assert retrain_spec(spec, 10).key != spec.key and RunSpec.from_dict(retrain_spec(spec, 10).to_dict()).replace_k == 10


@pytest.mark.parametrize("randomization,p", [("none", 0.0), ("labels", 1.0), ("gaussian", 1.0), ("shuffled-pixels", 1.0)])
def test_exactly_k_examples_are_replaced_by_fresh_draws(tiny_store, randomization, p):
    suite, store, runs = tiny_store
    base = dataclasses.replace(runs[0].spec, randomization=randomization, p=p)
    original = training_data(base, DataCache()).data
    replaced = training_data(retrain_spec(base, 7), DataCache())
    positions = torch.tensor(replaced.record["replaced_positions"])
    changed = (replaced.data.x_train != original.x_train).flatten(1).any(1)
    assert set(torch.nonzero(changed).flatten().tolist()) <= set(positions.tolist())
    assert changed.sum() >= 6  # a fresh input equals the old one only by accident
    keep = torch.ones(len(changed), dtype=torch.bool)
    keep[positions] = False
    assert torch.equal(replaced.data.y_train[keep], original.y_train[keep])
    sources = torch.tensor(replaced.record["replacement_test_indices"])
    # The fresh inputs are the run's randomized test inputs (same distribution as training).
    assert torch.equal(replaced.data.x_train[positions], original.x_test[sources])
    assert torch.equal(replaced.data.x_test, original.x_test)


def test_replacement_labels_follow_the_runs_corruption(tiny_store):
    suite, store, runs = tiny_store
    base = dataclasses.replace(runs[0].spec, randomization="labels", p=1.0, dataset_args=runs[0].spec.dataset_args)
    replaced = training_data(retrain_spec(base, 60), DataCache())
    sources = torch.tensor(replaced.record["replacement_test_indices"])
    positions = torch.tensor(replaced.record["replaced_positions"])
    clean = replaced.data.y_test[sources]
    agreement = (replaced.data.y_train[positions] == clean).float().mean().item()
    assert agreement < 0.6  # random labels agree with the truth ~1/3 of the time on 3 classes


def test_stability_measures_match_a_direct_computation_on_the_stored_retrain(clean_registry, tiny_store):
    suite, store, runs = tiny_store
    run = next(r for r in runs if r.spec.randomization == "labels")
    values = {v.measure: v for v in evaluate([run], [_MEASURES[n] for n in NAMES], store, CPU)}
    retrain = store.load(retrain_spec(run.spec, stability.K_REPLACED).key)  # cached as a run
    assert all(values[n].extra["retrain_key"] == retrain.key for n in NAMES)
    data = training_data(run.spec, DataCache()).data
    model = rebuild_model(run, run.weights()["final"], data.input_shape, data.num_classes)
    other = rebuild_model(retrain, retrain.weights()["final"], data.input_shape, data.num_classes)
    positions = retrain.randomization["replaced_positions"]
    with torch.no_grad():
        losses = [
            F.cross_entropy(other(data.x_train[i : i + 1]), data.y_train[i : i + 1]).item()
            - F.cross_entropy(model(data.x_train[i : i + 1]), data.y_train[i : i + 1]).item()
            for i in positions
        ]
        disagree = (model(data.x_test).argmax(1) != other(data.x_test).argmax(1)).double().mean().item()
    distance = sum(((a - b).double() ** 2).sum() for a, b in zip(model.parameters(), other.parameters())).sqrt().item()
    assert values["stability.replace_loss_change"].value == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    assert values["stability.replace_param_distance"].value == pytest.approx(distance, rel=1e-9)
    assert values["stability.replace_test_disagreement"].value == pytest.approx(disagree)
    assert distance > 0


def test_retraining_is_reproducible(tiny_store, tmp_path):
    from gentest.runner import train_missing
    from gentest.store import RunStore

    suite, store, runs = tiny_store
    spec = retrain_spec(runs[0].spec, 5)
    a = train_missing([spec], RunStore(tmp_path / "a"), CPU)[0].weights()["final"]
    b = train_missing([spec], RunStore(tmp_path / "b"), CPU)[0].weights()["final"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_without_a_store_stability_does_not_apply(tiny_store):
    suite, store, runs = tiny_store
    run = runs[0]
    data = training_data(run.spec, DataCache())
    cache = RunCache(
        rebuild_model(run, run.weights()["final"], data.data.input_shape, data.data.num_classes),
        rebuild_model(run, run.weights()["initial"], data.data.input_shape, data.data.num_classes),
        data.data,
    )
    with pytest.raises(NotApplicable, match="needs a run store"):
        _MEASURES["stability.replace_param_distance"].fn(MeasureContext(cache, "x"))
