"""Evaluation isolates every measure, caches values by (run, measure, version), and computes
shared quantities once."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from gentest.context import MeasureContext
from gentest.evaluation import as_scalar, evaluate
from gentest.registry import measure

CPU = torch.device("cpu")


def test_broken_measures_become_errors_and_the_others_still_compute(clean_registry, tiny_store, tmp_path):
    suite, store, runs = tiny_store

    @measure("test.raises", family="t", orientation="higher-worse")
    def raises(ctx):
        raise ValueError("no margin today")

    @measure("test.nan", family="t", orientation="higher-worse")
    def nan(ctx):
        return float("nan")

    @measure("test.vector", family="t", orientation="higher-worse")
    def vector(ctx):
        return torch.ones(3)

    @measure("test.mutates", family="t", orientation="higher-worse")
    def mutates(ctx):
        with torch.no_grad():
            next(ctx.model.parameters()).add_(1.0)
        return 1.0

    @measure("test.mutates_shared", family="t", orientation="higher-worse")
    def mutates_shared(ctx):
        ctx.layers()[0].weight.mul_(2.0)  # a view of the cached model's weights
        return 1.0

    @measure("test.slow", family="t", orientation="higher-worse", timeout_s=0.2)
    def slow(ctx):
        end = time.monotonic() + 5
        while time.monotonic() < end:
            pass
        return 1.0

    @measure("test.fine", family="t", orientation="higher-worse", version="7")
    def fine(ctx):
        return float(ctx.layers()[0].weight.abs().sum())

    registry = clean_registry._MEASURES
    names = ["test.raises", "test.nan", "test.vector", "test.mutates", "test.mutates_shared", "test.slow", "test.fine"]
    store_copy = type(store)(tmp_path / "s")
    for run in runs:  # evaluate into a private store so other tests see no cached values
        (store_copy.runs_dir).mkdir(parents=True, exist_ok=True)
        import shutil

        shutil.copytree(run.path, store_copy.runs_dir / run.key)
    runs_copy = [store_copy.load(r.key) for r in runs]
    values = evaluate(runs_copy, [registry[n] for n in names], store_copy, CPU)
    by = {(v.run_key, v.measure): v for v in values}
    for run in runs_copy:
        assert by[run.key, "test.raises"].error == "ValueError: no margin today"
        assert by[run.key, "test.nan"].error == "returned nan, not a finite number"
        assert by[run.key, "test.vector"].error == "TypeError: returned Tensor of shape (3,), not a scalar"
        assert "modified the model's weights" in by[run.key, "test.mutates"].error
        assert "modified the model's weights" in by[run.key, "test.mutates_shared"].error
        assert by[run.key, "test.slow"].error == "timed out after 0.2 s"
        # The shared model was repaired after the mutation: `fine` sees the trained weights.
        expected = run.weights()["final"]["1.weight"].abs().sum().item()
        assert by[run.key, "test.fine"].error is None
        assert by[run.key, "test.fine"].value == pytest.approx(expected)
        assert all(v.value is None for (k, n), v in by.items() if k == run.key and n != "test.fine")
    assert store_copy.get_value(runs_copy[0].key, "test.fine", "7").value == by[runs_copy[0].key, "test.fine"].value


def test_adding_a_measure_to_a_finished_suite_computes_only_that_measure(clean_registry, tiny_store, tmp_path):
    suite, store, runs = tiny_store
    calls = {"a": 0, "b": 0}

    @measure("test.count_a", family="t", orientation="higher-worse")
    def count_a(ctx):
        calls["a"] += 1
        return 1.0

    @measure("test.count_b", family="t", orientation="higher-worse")
    def count_b(ctx):
        calls["b"] += 1
        return 2.0

    reg = clean_registry._MEASURES
    evaluate(runs, [reg["test.count_a"]], store, CPU)
    assert calls == {"a": len(runs), "b": 0}
    evaluate(runs, [reg["test.count_a"], reg["test.count_b"]], store, CPU)
    assert calls == {"a": len(runs), "b": len(runs)}
    evaluate(runs, [reg["test.count_a"], reg["test.count_b"]], store, CPU)
    assert calls == {"a": len(runs), "b": len(runs)}


def test_margins_are_computed_once_per_run_however_many_measures_ask(clean_registry, tiny_store):
    suite, store, runs = tiny_store
    seen = []

    for i in range(3):

        @measure(f"test.uses_margins_{i}", family="t", orientation="higher-better")
        def uses(ctx):
            seen.append(ctx._cache)
            return ctx.margin("train")

    reg = clean_registry._MEASURES
    evaluate(runs[:1], [reg[f"test.uses_margins_{i}"] for i in range(3)], store, CPU)
    cache = seen[0]
    assert all(c is cache for c in seen)
    assert cache.hits["margins/train"] == 2  # computed by the first measure, reused by two


def test_context_gives_the_training_data_as_trained(tiny_store):
    from gentest.context import RunCache
    from gentest.runner import DataCache, training_data

    suite, store, runs = tiny_store
    random_run = next(r for r in runs if r.spec.randomization == "labels")
    cache = RunCache.from_run(random_run, training_data(random_run.spec, DataCache()), CPU)
    ctx = MeasureContext(cache, "x")
    stored_labels = random_run.weights()["randomization"]["y_train"]
    assert torch.equal(ctx.y_train, stored_labels)
    # The rebuilt model is the trained one: it fits its (random) training labels.
    fit = (ctx.logits("train").argmax(1) == ctx.y_train).double().mean().item()
    assert fit == pytest.approx(random_run.metrics["train_acc"], abs=1e-12)
    margins = ctx.margins("train")
    manual = torch.tensor([
        ctx.logits()[i, ctx.y_train[i]] - max(ctx.logits()[i, j] for j in range(ctx.num_classes) if j != ctx.y_train[i])
        for i in range(len(ctx.y_train))
    ])
    assert torch.allclose(margins, manual)


@pytest.mark.parametrize("raw,expected", [(3, 3.0), (np.float32(1.5), 1.5), (torch.tensor(2.0), 2.0), (torch.tensor([4.0]), 4.0)])
def test_as_scalar_accepts_numbers(raw, expected):
    assert as_scalar(raw) == expected


@pytest.mark.parametrize("raw", [True, "1.0", [1.0], np.ones(2), torch.ones(2, 2), None])
def test_as_scalar_refuses_non_scalars(raw):
    with pytest.raises(TypeError):
        as_scalar(raw)
    assert math.isnan(as_scalar(float("nan")))


def test_twins_of_a_pair_draw_common_random_numbers():
    """ctx.generator is seeded from the pair: the natural and the randomized twin of a pair get
    the same stream (common random numbers), another pair or another name a different one."""
    from types import SimpleNamespace

    from gentest.context import random_stream_seed
    from gentest.suites import load_suite

    specs = load_suite("ci").specs
    by_pair: dict[str, list] = {}
    for spec in specs:
        by_pair.setdefault(spec.pair_key, []).append(spec)
    (a_nat, a_rand), (b_nat, _) = [sorted(group, key=lambda s: s.randomization != "none") for group in by_pair.values()]
    assert a_nat.key != a_rand.key and a_nat.randomization == "none" != a_rand.randomization

    def stored(spec):
        return SimpleNamespace(run=SimpleNamespace(spec=spec), key=spec.key)

    seed = random_stream_seed(stored(a_nat), "hessian")
    assert random_stream_seed(stored(a_rand), "hessian") == seed
    assert random_stream_seed(stored(b_nat), "hessian") != seed
    assert random_stream_seed(stored(a_nat), "pacbayes/sigma") != seed
    # An in-memory cache has no pair: its key seeds it.
    assert random_stream_seed(SimpleNamespace(run=None, key=a_nat.key), "hessian") != seed


def test_named_streams_and_the_shared_cache_need_no_second_context():
    """ctx.stream(name) is the generator a context named ``name`` would get (ctx.generator is
    the stream of the measure's own name); ctx.shared computes once per run, for every context."""
    from gentest.context import RunCache
    from gentest.datasets import DataSplit

    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    cache = RunCache(model, model, DataSplit("tiny", x, y, x, y, 2), "cpu", key="some-run")
    a, b = MeasureContext(cache, "m.a"), MeasureContext(cache, "m.b")
    draw = lambda g: torch.randn(4, generator=g)  # noqa: E731
    assert torch.equal(draw(a.stream("m.b")), draw(b.generator))
    assert torch.equal(draw(a.stream("shared/x")), draw(b.stream("shared/x")))
    assert not torch.equal(draw(a.stream("shared/x")), draw(a.stream("shared/y")))
    calls = []
    first = a.shared("shared/value", lambda: calls.append(1) or torch.tensor([1.0]))
    second = b.shared("shared/value", lambda: calls.append(2) or torch.tensor([2.0]))
    assert calls == [1] and second is first and cache.hits["shared/value"] == 1
