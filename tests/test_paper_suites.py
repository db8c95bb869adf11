"""The paper's experiments as built-in suites: what each grid contains, and that the CIFAR-10
suites run end to end (a step or two) on a tiny fake CIFAR-10 copy in torchvision's layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gentest.runner import DataCache, train_missing
from gentest.store import RunStore
from gentest.suites import builtin_suites, load_suite
from test_vision_datasets import write_cifar10

PAPER = ("paper-fig1", "paper-table1", "standard", "cifar10-fig1", "cifar10-table1")


def kinds(suite) -> set[str]:
    return {s.randomization for s in suite.specs}


def test_paper_suites_are_built_in_and_state_what_they_cost():
    for name in PAPER:
        assert name in builtin_suites()
        suite = load_suite(name)
        assert suite.description and suite.cost, name


def test_paper_fig1_has_every_randomization_a_corruption_sweep_two_models_and_three_seeds():
    suite = load_suite("paper-fig1")
    assert kinds(suite) == {"none", "labels", "shuffled-pixels", "random-pixels", "gaussian"}
    assert sorted({s.p for s in suite.specs if s.randomization == "labels"}) == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert {s.model for s in suite.specs} == {"mlp", "cnn1d"} and {s.seed for s in suite.specs} == {0, 1, 2}


def test_paper_table1_crosses_every_regularizer_with_true_and_random_labels():
    suite = load_suite("paper-table1")
    recipes = {(s.train.weight_decay > 0, s.train.augment, s.train.dropout > 0) for s in suite.specs}
    assert len(recipes) == 8 and kinds(suite) == {"none", "labels"}
    assert len({(s.model, s.model_args) for s in suite.specs}) == 3


def test_standard_has_three_architectures_both_stopping_rules_five_randomizations_and_three_seeds():
    suite = load_suite("standard")
    assert len({(s.model, s.model_args) for s in suite.specs}) >= 3
    assert len({s.train for s in suite.specs}) >= 3
    # Both stopping rules: 100 % train accuracy (Zhang et al.) and train cross-entropy <= 0.01
    # (Jiang et al., Dziugaite et al.), each over every architecture.
    rules = {(s.train.stop_train_acc, s.train.stop_train_loss) for s in suite.specs}
    assert rules == {(1.0, None), (None, 0.01)}
    for rule in rules:
        assert len({(s.model, s.model_args) for s in suite.specs
                    if (s.train.stop_train_acc, s.train.stop_train_loss) == rule}) >= 3
    assert kinds(suite) == {"none", "labels", "shuffled-pixels", "random-pixels", "gaussian"}
    assert len({s.p for s in suite.specs if s.randomization == "labels" and s.p < 1}) >= 2
    assert len({s.seed for s in suite.specs}) >= 3
    naturals = {s.pair_key for s in suite.specs if s.is_natural}
    assert all(s.pair_key in naturals for s in suite.specs)  # every randomized run has its twin


@pytest.mark.parametrize("name", ["cifar10-fig1", "cifar10-table1"])
def test_cifar10_suites_run_a_few_steps_on_a_fake_cifar10(name, tmp_path):
    write_cifar10(tmp_path / "data", np.random.default_rng(0))
    suite = load_suite(name)
    # One natural and one randomized run per model, one epoch each on the 10 fake images.
    chosen, seen = [], set()
    for spec in suite.specs:
        if (spec.model, spec.model_args, spec.randomization) not in seen and not spec.train.augment:
            seen.add((spec.model, spec.model_args, spec.randomization))
            chosen.append(dataclasses.replace(spec, train=dataclasses.replace(spec.train, max_epochs=1)))
    runs = train_missing(chosen, RunStore(tmp_path / "store"), torch.device("cpu"), DataCache(tmp_path / "data"))
    assert len(runs) == len(chosen) and all(r.metrics["epochs"] == 1 for r in runs)
    assert {r.spec.dataset_args for r in runs} == {suite.specs[0].dataset_args}
    assert all(r.metrics["n_params"] > 0 for r in runs)
