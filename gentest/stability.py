"""Stability retraining: the same run with k training examples replaced by fresh draws.

Uniform stability (Bousquet & Elisseeff 2002; Hardt et al. 2016 for SGD) compares the
algorithm's output on a training set S and on S^i, which differs in one example replaced by an
independent draw from the same distribution. gentest estimates it empirically: a retrain of
the run with ``replace_k`` examples replaced, everything else (seed, initialization, batch
order, settings) identical. The retrain is a RunSpec of its own (``replace_k > 0``), trained
and cached in the run store like any run, so its cost is paid once and stated with the run.

Fresh draws come from the run's *randomized* test split, which follows the run's data
distribution: shuffled pixels share the run's permutation, random pixels and Gaussian inputs
are independent draws, and for ``labels`` the replacement labels are corrupted with the run's
p (test labels are otherwise clean). Which positions were replaced, and by which test
examples, is recorded.
"""

from __future__ import annotations

import dataclasses

import torch

from gentest.datasets import DataSplit
from gentest.errors import GentestError
from gentest.randomizations import Randomized, corrupt_labels, replace_fields, tensor_digest
from gentest.spec import RunSpec


def replace_examples(randomized: Randomized, clean: DataSplit, spec: RunSpec) -> Randomized:
    """``randomized`` with ``spec.replace_k`` training examples replaced by fresh draws."""
    k = spec.replace_k
    data = randomized.data
    n_train, n_pool = len(data.y_train), len(data.y_test)
    if not 0 < k <= min(n_train, n_pool):
        raise GentestError(f"replace_k={k} needs 1 <= k <= {min(n_train, n_pool)} (train and test sizes)")
    gen = torch.Generator().manual_seed(spec.seed_for("replace"))
    positions = torch.randperm(n_train, generator=gen)[:k]
    sources = torch.randperm(n_pool, generator=gen)[:k]
    new_x, new_y = data.x_test[sources], data.y_test[sources]
    if spec.randomization == "labels" and not spec.corrupt_test_labels:
        new_y = corrupt_labels(new_y, spec.p, data.num_classes, gen)
    x_train, y_train = data.x_train.clone(), data.y_train.clone()
    x_train[positions], y_train[positions] = new_x, new_y
    record = {
        **randomized.record,
        "replace_k": k,
        "replaced_positions": positions.tolist(),
        "replacement_test_indices": sources.tolist(),
        "train_inputs_sha256": tensor_digest(x_train),
        "train_labels_sha256": tensor_digest(y_train),
    }
    tensors = {**randomized.tensors, "y_train": y_train, "replaced_positions": positions}
    return Randomized(replace_fields(data, x_train=x_train, y_train=y_train), record, tensors)


def retrain_spec(spec: RunSpec, k: int) -> RunSpec:
    return dataclasses.replace(spec, replace_k=k)
