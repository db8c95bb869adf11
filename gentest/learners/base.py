"""What the closed-form learners share: one-hot targets, float64 casting modules, and the
metrics and :class:`~gentest.training.TrainResult` every learner returns.

These learners regress the one-hot label matrix Y (n × C) exactly, as in Zhang et al. (2017),
section 5 (solve Kα = y), and predict by the argmax of their C outputs. Their loss is therefore
the squared error Σ_k (f_k(x) − Y_k)², averaged over examples (``metrics["loss"] = "squared"``),
not the cross-entropy of SGD runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

EVAL_BATCH = 4096


def one_hot(y: torch.Tensor, num_classes: int, device: torch.device) -> torch.Tensor:
    """The (n, C) float64 one-hot target matrix Y."""
    return torch.nn.functional.one_hot(y.to(device), num_classes).double()


class ToFloat64(nn.Module):
    """Casts the input to float64 (the learners are solved and evaluated in float64)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


class ToFloat32(nn.Module):
    """Casts the outputs back to float32, the dtype of the data and the rest of gentest."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """A float64 ``nn.Linear(d_in, d_out, bias=False)`` with zero weights, built without the
    default random initialization (which would draw from, and advance, the global RNG)."""
    layer = torch.nn.utils.skip_init(nn.Linear, d_in, d_out, bias=False, dtype=torch.float64)
    nn.init.zeros_(layer.weight)
    return layer


def split_metrics(f: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """(accuracy of argmax f, mean squared error to the one-hot targets)."""
    y = y.to(f.device)
    acc = (f.argmax(1) == y).double().mean().item()
    loss = (f - one_hot(y, num_classes, f.device)).pow(2).sum(1).mean().item()
    return acc, loss


def metrics_row(f_train, y_train, f_test, y_test, num_classes: int, epoch: int = 0, steps: int = 0) -> dict[str, Any]:
    """One learning-curve row in the SGD curve's format (``lr`` is 0: nothing was stepped)."""
    train_acc, train_loss = split_metrics(f_train, y_train, num_classes)
    test_acc, test_loss = split_metrics(f_test, y_test, num_classes)
    return {
        "epoch": epoch, "steps": steps, "lr": 0.0,
        "train_acc": train_acc, "train_loss": train_loss, "test_acc": test_acc, "test_loss": test_loss,
    }


def final_metrics(curve: list[dict[str, Any]], learner: str, n_params: int, wall_s: float, device: torch.device,
                  steps: int = 0, **extra: Any) -> dict[str, Any]:
    """The run metrics of a learner, with the keys of an SGD run's metrics.

    ``fitted`` means train accuracy 100 %; ``steps_to_fit`` is None for a closed-form solve
    (no SGD steps) and the step count for ``linear-sgd``.
    """
    final = curve[-1]
    fitted = final["train_acc"] >= 1.0
    return {
        "train_acc": final["train_acc"],
        "train_loss": final["train_loss"],
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "gap": final["train_acc"] - final["test_acc"],
        "loss_gap": final["test_loss"] - final["train_loss"],
        "fitted": fitted,
        "epochs": final["epoch"],
        "steps": steps,
        "steps_to_fit": (steps or None) if fitted else None,
        "steps_to_loss": {},
        "n_params": n_params,
        "wall_s": wall_s,
        "device": str(device),
        "learner": learner,
        "loss": "squared",
        **extra,
    }


@torch.no_grad()
def batched(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn`` over ``x`` in slices of EVAL_BATCH rows, concatenated."""
    return torch.cat([fn(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
