"""Warm against cold evaluation of the measures on one stored run: the value cache should make
a finished suite's re-evaluation cost file reads only. Baseline: the cold evaluation."""

from __future__ import annotations

import pytest
import torch

from gentest.evaluation import evaluate
from gentest.pipeline import choose_measures
from gentest.runner import train_missing
from gentest.store import RunStore
from gentest.suites import load_suite

from cold_store import cold_copy

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    store = RunStore(folder / "store")
    spec = load_suite("ci").specs[0]
    return folder, store, train_missing([spec], store, CPU)


def fresh_copy(folder, store):
    copy = cold_copy(folder, store)  # every round measures from scratch
    return (copy.runs(), copy), {}


@pytest.mark.benchmark(group="evaluate-all-builtins-one-run")
def test_cold_evaluation(benchmark, one_run):
    folder, store, runs = one_run
    measures = choose_measures(None)

    def cold(runs_iter, copy):
        return evaluate(list(runs_iter), measures, copy, CPU)

    values = benchmark.pedantic(cold, setup=lambda: fresh_copy(folder, store), rounds=3, iterations=1)
    assert len(values) == len(measures)


@pytest.mark.benchmark(group="evaluate-all-builtins-one-run")
def test_warm_evaluation(benchmark, one_run):
    folder, store, runs = one_run
    measures = choose_measures(None)
    evaluate(runs, measures, store, CPU)  # fill the cache
    values = benchmark.pedantic(evaluate, args=(runs, measures, store, CPU), rounds=5, iterations=1)
    assert all(v is not None for v in values)
