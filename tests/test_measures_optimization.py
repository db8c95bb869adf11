"""Optimization measures read the run's training record: hand-set records with known answers,
the missing-milestone cases, and a real (tiny) training run checked against its curve."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import measures.optimization  # noqa: F401  (registers the measures)
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit, load_dataset
from gentest.errors import NotApplicable
from gentest.registry import _MEASURES
from gentest.spec import RunSpec, TrainSettings, freeze
from gentest.training import train

from tiny_mlp import B1, B2, W1, W2, mlp

NAMES = ("optimization.steps_to_fit", "optimization.steps_to_loss_0.1", "optimization.steps_0.1_to_0.01")


def split() -> DataSplit:
    x = torch.zeros(4, 3)
    y = torch.zeros(4, dtype=torch.int64)
    return DataSplit("tiny", x, y, x, y, 3)


def record(steps_to_fit=960, to_01=640, to_001=928, **extra):
    return {
        "train_acc": 1.0 if steps_to_fit is not None else 0.9,
        "train_loss": 0.0048,
        "epochs": 30,
        "steps": 960,
        "steps_to_fit": steps_to_fit,
        "steps_to_loss": {"0.1": to_01, "0.01": to_001},
        **extra,
    }


def context(metrics, spec=None, name="test") -> MeasureContext:
    """A context over a fake stored run (key, spec, metrics), as RunCache.from_run would give."""
    run = SimpleNamespace(key="fake-run", spec=spec, metrics=metrics)
    model = mlp(W1, B1, W2, B2)
    return MeasureContext(RunCache(model, mlp(W1, B1, W2, B2), split(), "cpu", run=run), name)


def call(name, ctx):
    return _MEASURES[name].fn(ctx)


def default_spec(**train):
    return SimpleNamespace(train=TrainSettings(**{"stop_train_acc": 1.0, "max_epochs": 200, **train}))


def test_metadata():
    for name in NAMES:
        m = _MEASURES[name]
        assert m.family == "optimization" and m.orientation == "higher-worse" and m.requires == frozenset()


def test_values_from_the_record():
    ctx = context(record(steps_to_fit=1536, to_01=1088, to_001=1504))
    assert call("optimization.steps_to_fit", ctx) == 1536.0
    assert call("optimization.steps_to_loss_0.1", ctx) == 1088.0
    assert call("optimization.steps_0.1_to_0.01", ctx) == 1504.0 - 1088.0
    assert all(isinstance(call(name, ctx), float) for name in NAMES)


def test_metrics_set_by_hand_on_an_in_memory_context():
    ctx = MeasureContext(RunCache(mlp(W1, B1, W2, B2), mlp(W1, B1, W2, B2), split(), "cpu"), "test")
    ctx.metrics = record(steps_to_fit=100, to_01=60, to_001=60)
    assert call("optimization.steps_to_fit", ctx) == 100.0
    assert call("optimization.steps_0.1_to_0.01", ctx) == 0.0  # both crossed in the same epoch


def test_no_training_record_is_not_applicable():
    ctx = MeasureContext(RunCache(mlp(W1, B1, W2, B2), mlp(W1, B1, W2, B2), split(), "cpu"), "test")
    assert ctx.metrics == {}
    for name in NAMES:
        with pytest.raises(NotApplicable, match="no training record"):
            call(name, ctx)


def test_record_without_the_milestone_level_is_not_applicable():
    ctx = context({**record(), "steps_to_loss": {"0.1": 640}})
    assert call("optimization.steps_to_loss_0.1", ctx) == 640.0
    with pytest.raises(NotApplicable, match="no train cross-entropy milestone 0.01"):
        call("optimization.steps_0.1_to_0.01", ctx)


def test_unfitted_run_is_an_error():
    ctx = context(record(steps_to_fit=None), spec=default_spec())
    with pytest.raises(ValueError, match=r"did not fit.*train accuracy >= 1, at most 200 epochs"):
        call("optimization.steps_to_fit", ctx)


def test_loss_01_never_reached():
    # Did not fit either: a failed run, an error.
    ctx = context(record(steps_to_fit=None, to_01=None, to_001=None), spec=default_spec())
    for name in ("optimization.steps_to_loss_0.1", "optimization.steps_0.1_to_0.01"):
        with pytest.raises(ValueError, match="never reached 0.1"):
            call(name, ctx)
    # Fitted (100 % accuracy) while the loss was still above 0.1: the stopping rule hid it.
    ctx = context(record(steps_to_fit=320, to_01=None, to_001=None), spec=default_spec())
    with pytest.raises(NotApplicable, match="stopped before train cross-entropy reached 0.1"):
        call("optimization.steps_to_loss_0.1", ctx)
    assert call("optimization.steps_to_fit", ctx) == 320.0


def test_loss_001_cut_off_by_the_stopping_rule_is_not_applicable():
    ctx = context(record(steps_to_fit=960, to_01=640, to_001=None), spec=default_spec())
    with pytest.raises(NotApplicable) as info:
        call("optimization.steps_0.1_to_0.01", ctx)
    assert str(info.value).startswith("the run stopped before train cross-entropy reached 0.01 (stopping rule: ")
    assert "train accuracy >= 1, at most 200 epochs" in str(info.value)
    assert call("optimization.steps_to_loss_0.1", ctx) == 640.0
    # Without a spec the rule is unknown, but the verdict is the same.
    with pytest.raises(NotApplicable, match="stopping rule: unknown"):
        call("optimization.steps_0.1_to_0.01", context(record(to_001=None)))


def test_loss_001_never_reached_by_an_unfitted_run_is_an_error():
    ctx = context(record(steps_to_fit=None, to_01=640, to_001=None), spec=default_spec(stop_train_loss=0.01))
    with pytest.raises(ValueError, match=r"never reached 0.01.*train cross-entropy < 0.01"):
        call("optimization.steps_0.1_to_0.01", ctx)


def first_steps_at_or_below(curve, level):
    for row in curve:
        if row["train_loss"] <= level:
            return row["steps"]
    return None


def test_real_training_record_matches_its_curve():
    spec = RunSpec(
        dataset="synthetic",
        dataset_args=freeze({"features": 8, "classes": 3, "train_size": 120, "test_size": 60}),
        model="mlp",
        model_args=freeze({"hidden": [32]}),
        randomization="none",
        p=0.0,
        seed=0,
        train=TrainSettings(lr=0.1, batch_size=32, max_epochs=200, stop_train_acc=1.0, stop_train_loss=0.01),
    )
    data = load_dataset("synthetic", {"features": 8, "classes": 3, "train_size": 120, "test_size": 60})
    result = train(spec, data, torch.device("cpu"))
    ctx = context(result.metrics, spec=spec)
    steps_per_epoch = -(-120 // 32)
    fit_row = next(row for row in result.curve if row["train_acc"] >= 1.0 or row["train_loss"] < 0.01)
    assert call("optimization.steps_to_fit", ctx) == fit_row["steps"]
    s01 = first_steps_at_or_below(result.curve, 0.1)
    assert call("optimization.steps_to_loss_0.1", ctx) == s01 and s01 % steps_per_epoch == 0
    s001 = first_steps_at_or_below(result.curve, 0.01)
    if s001 is None:  # 100 % accuracy came first
        with pytest.raises(NotApplicable, match="stopped before"):
            call("optimization.steps_0.1_to_0.01", ctx)
    else:
        assert call("optimization.steps_0.1_to_0.01", ctx) == s001 - s01
