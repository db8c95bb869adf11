"""Training: SGD with momentum to a stopping rule, recording the learning curve.

Natural and randomized twins train to the same rule (Zhang et al. 2017, section 2; Jiang et
al. 2020 train every model to the same cross-entropy), so a measure cannot separate them by
training progress alone: stop when train accuracy reaches ``stop_train_acc`` (100 % by
default; ``None`` switches this rule off) or the train cross-entropy falls below
``stop_train_loss``, after at most ``max_epochs`` epochs. Steps-to-fit is recorded (the paper's Figure 1b).

The whole dataset lives on the device as tensors; batches are index slices of a seeded
permutation, and augmentation is batched tensor work: no per-sample Python in the loop. Train
accuracy and loss are measured on the full training set in eval mode after every epoch.

A stability retrain (``spec.replace_k > 0``, :mod:`gentest.stability`) is the same training
but keeps no learning curve: after each epoch it computes only what the stopping rule needs
(:func:`stopping_rule_met`) and evaluates the test set once, at the end. It takes exactly the
same batches and steps and stops after the same epoch as the full-curve training would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from gentest.datasets import DataSplit
from gentest.errors import GentestError
from gentest.models import build_model, count_parameters
from gentest.spec import RunSpec, thaw

# Train cross-entropy levels whose first crossing is recorded (Jiang et al. 2020's
# optimization-based measures: steps to 0.1, and from 0.1 to 0.01).
LOSS_MILESTONES = (0.1, 0.01)
EVAL_BATCH = 4096

EpochCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainResult:
    model: nn.Module
    initial_state: dict[str, torch.Tensor]
    curve: list[dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode over all of ``x``."""
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(x), EVAL_BATCH):
        logits = model(x[i : i + EVAL_BATCH])
        target = y[i : i + EVAL_BATCH]
        correct += (logits.argmax(1) == target).sum().item()
        loss += F.cross_entropy(logits, target, reduction="sum").item()
    model.train(was_training)
    return correct / len(x), loss / len(x)


FIT_CHUNK = 256  # examples per forward pass of the accuracy-only stopping check (it exits early)


@torch.no_grad()
def stopping_rule_met(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, stop_acc: float | None, stop_loss: float | None
) -> bool:
    """Whether the stopping rule of :func:`train` holds, computing only what it needs.

    With a loss rule the full evaluation is needed (:func:`evaluate`, the same passes as the
    curve's). With the accuracy rule alone, accuracy ``correct/n >= stop_acc`` is decided chunk
    by chunk and the pass stops as soon as too many examples are misclassified for the rule to
    hold: while a network still errs on early chunks (most epochs) that costs a fraction of a
    pass. The decision is the one :func:`evaluate`'s accuracy gives, up to logits that differ
    by float rounding between chunk sizes (an argmax tie at that level flips; none is expected).
    """
    if stop_loss is not None:
        acc, loss = evaluate(model, x, y)
        return loss < stop_loss or (stop_acc is not None and acc >= stop_acc)
    if stop_acc is None:
        return False
    was_training = model.training
    model.eval()
    n, wrong = len(x), 0
    try:
        for i in range(0, n, FIT_CHUNK):
            wrong += (model(x[i : i + FIT_CHUNK]).argmax(1) != y[i : i + FIT_CHUNK]).sum().item()
            if not (n - wrong) / n >= stop_acc:  # even if every other example is right
                return False
        return True
    finally:
        model.train(was_training)


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after ``pad``-pixel zero padding, and a random horizontal flip, per image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (b, h, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (b, 1, w)
    batch = torch.arange(b, device=x.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (b, c, h, w)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, cropped.flip(-1), cropped)


def augment_sequence_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The 1-D analog of the paper's random crop, for sequences (MNIST-1D): zero-pad ``pad``
    positions at both ends and keep a random window of the original length, per example (a
    random shift by up to ``pad`` positions). No flip: a reversed MNIST-1D pattern is another
    pattern, not the same digit."""
    squeeze = x.dim() == 2  # (b, L) or (b, C, L)
    seq = x[:, None, :] if squeeze else x
    b, c, length = seq.shape
    padded = F.pad(seq, (pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    index = (offsets[:, None] + torch.arange(length, device=x.device))[:, None, :].expand(b, c, length)
    out = padded.gather(2, index)
    return out[:, 0, :] if squeeze else out


def train(
    spec: RunSpec,
    data: DataSplit,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
    keep_curve: bool | None = None,
) -> TrainResult:
    """Train ``spec``'s model on ``data`` (already randomized) and return it with its curve.

    ``keep_curve`` (default: for every run but a stability retrain) evaluates the training and
    the test set after every epoch; without it only the stopping rule is checked (module
    docstring) and the curve's rows carry epoch, steps, lr and ``fitted``, the last one in full."""
    if spec.learner != "sgd":  # a closed-form learner (kernel, min-norm linear, Theorem 1)
        from gentest.learners import fit

        return fit(spec, data, device)
    settings = spec.train
    if settings.augment and len(data.input_shape) not in (1, 2, 3):
        raise GentestError(f"augment applies to images (C, H, W) and sequences (L) or (C, L); {data.name} inputs "
                           f"have shape {data.input_shape}")
    augment = augment_batch if len(data.input_shape) == 3 else augment_sequence_batch
    init_gen = torch.Generator().manual_seed(spec.seed_for("init"))
    order_gen = torch.Generator().manual_seed(spec.seed_for("order"))
    aug_gen = torch.Generator().manual_seed(spec.seed_for("augment"))
    model = build_model(
        spec.model, data.input_shape, data.num_classes, generator=init_gen, dropout=settings.dropout, **_model_args(spec)
    )
    initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    decay = settings.lr_decay if settings.lr_schedule == "exponential" else 1.0
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=decay)

    def snapshot(epoch: int, steps: int) -> dict[str, Any]:
        train_acc, train_loss = evaluate(model, x_train, y_train)
        test_acc, test_loss = evaluate(model, x_test, y_test)
        return {
            "epoch": epoch,
            "steps": steps,
            "lr": optimizer.param_groups[0]["lr"],
            "train_acc": train_acc,
            "train_loss": train_loss,
            "test_acc": test_acc,
            "test_loss": test_loss,
        }

    def fitted(row: dict[str, Any]) -> bool:
        if "fitted" in row:  # a row without a curve: the stopping rule's answer
            return row["fitted"]
        loss_rule = settings.stop_train_loss is not None and row["train_loss"] < settings.stop_train_loss
        acc_rule = settings.stop_train_acc is not None and row["train_acc"] >= settings.stop_train_acc
        return acc_rule or loss_rule

    if keep_curve is None:
        keep_curve = spec.replace_k == 0  # a stability retrain needs only its final model

    def epoch_row(epoch: int, steps: int) -> dict[str, Any]:
        if keep_curve:
            return snapshot(epoch, steps)
        met = stopping_rule_met(model, x_train, y_train, settings.stop_train_acc, settings.stop_train_loss)
        return {"epoch": epoch, "steps": steps, "lr": optimizer.param_groups[0]["lr"], "fitted": met}

    start = time.perf_counter()
    n, steps = len(x_train), 0
    # Dropout draws from the global generator; fork it so the masks are a function of the
    # spec's seed and the caller's random state is left exactly as it was.
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.random.manual_seed(spec.seed_for("dropout"))
        curve = [epoch_row(0, 0)]
        model.train()
        for epoch in range(1, settings.max_epochs + 1):
            if fitted(curve[-1]):
                break
            order = torch.randperm(n, generator=order_gen).to(device)
            for i in range(0, n, settings.batch_size):
                idx = order[i : i + settings.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if settings.augment:
                    xb = augment(xb, aug_gen)
                loss = F.cross_entropy(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
            scheduler.step()
            curve.append(epoch_row(epoch, steps))
            if on_epoch is not None:
                on_epoch(epoch, curve[-1])
    wall_s = time.perf_counter() - start

    model.eval()
    is_fitted = fitted(curve[-1])
    if not keep_curve:  # the final row in full, for the run's metrics (one pass over each split)
        curve[-1] = snapshot(curve[-1]["epoch"], steps)
    final = curve[-1]
    metrics = {
        "train_acc": final["train_acc"],
        "train_loss": final["train_loss"],
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "gap": final["train_acc"] - final["test_acc"],
        "loss_gap": final["test_loss"] - final["train_loss"],
        "fitted": is_fitted,
        "epochs": final["epoch"],
        "steps": steps,
        "steps_to_fit": steps if is_fitted else None,
        "steps_to_loss": {str(level): _first_steps_below(curve, level) for level in LOSS_MILESTONES},
        "n_params": count_parameters(model),
        "n_test": int(len(y_test)),  # the gap's test-set size: scoring weights pairs by it
        "wall_s": wall_s,
        "device": str(device),
    }
    return TrainResult(model.cpu(), initial_state, curve, metrics)


def _first_steps_below(curve: list[dict[str, Any]], level: float) -> int | None:
    """Steps at the first epoch whose train loss is at most ``level``; None when it never was,
    or when the curve was not kept (a stability retrain's rows carry no loss)."""
    if any("train_loss" not in row for row in curve):
        return None
    return next((row["steps"] for row in curve if row["train_loss"] <= level), None)


def _model_args(spec: RunSpec) -> dict[str, Any]:
    return thaw(spec.model_args)
