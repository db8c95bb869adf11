"""The construction of Zhang et al. (2017), Theorem 1: a two-layer ReLU network with 2n + d
weights that represents any function on a sample of n points in d dimensions.

    c(x) = Σ_{j=1..n} w_j · max(⟨a, x⟩ − b_j, 0)

(proof in the paper's appendix C). Draw a ∈ R^d (here a ~ N(0, I) from the run's ``init``
seed) so that the projections z_i = ⟨a, x_i⟩ are distinct (true almost surely for distinct
inputs), sort them z_(1) < … < z_(n), and interleave the biases: b_1 < z_(1) < b_2 < z_(2) < …
< b_n < z_(n). Then A_ij = max(z_(i) − b_j, 0) is lower triangular with a positive diagonal,
so A w = y has a unique solution by forward substitution, for any labels y. Here
b_1 = z_(1) − (z_(n) − z_(1))/n and b_i = z_(i−1) + (z_(i) − z_(i−1))/4: any point strictly
between works; one a quarter of the way up keeps the substitution's recursion contracting
(see the module's tests), so w stays small enough for float64 to reproduce the labels.

With C classes the network has one real output per class, c_k(x) = Σ_j W_jk max(⟨a, x⟩ − b_j, 0),
fitting the one-hot labels (a, b shared): d + n + nC parameters, 2n + d for C = 1 (the scalar
theorem, used for a regression label). As a module:

    nn.Sequential(ToFloat64, Flatten, Linear(d, 1, bias=False) [a], Thresholds(n) [z − b],
                  ReLU, Linear(n, C, bias=False) [W], ToFloat32)

in float64 (the fit is exact only to float64 precision: consecutive projections of thousands of
points are close, so the slopes W are large). The existing norm measures see two weight
matrices, a and W (the thresholds b are biases of neither). The initial weights are the same
a and b with W = 0: only the output weights depend on the labels.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from gentest.errors import GentestError
from gentest.learners.base import ToFloat32, ToFloat64, final_metrics, metrics_row, one_hot, zero_linear
from gentest.learners.linalg import device_for_float64

NAME = "theorem1"
OPTIONS: dict[str, Any] = {}


def validate(options: dict[str, Any]) -> dict[str, Any]:
    for key in options:
        raise GentestError(f"option '{key}' is unknown; {NAME} takes no options")
    return {}


class Thresholds(nn.Module):
    """z ↦ (z − b_1, …, z − b_n) for a scalar z per example: the n shifted copies of ⟨a, x⟩."""

    def __init__(self, n: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z - self.bias

    def extra_repr(self) -> str:
        return f"n={len(self.bias)}"


def build_network(d: int, n: int, num_classes: int) -> nn.Sequential:
    """The architecture with all weights zero (no random draw: the global RNG is left alone)."""
    net = nn.Sequential(
        ToFloat64(), nn.Flatten(), zero_linear(d, 1), Thresholds(n), nn.ReLU(), zero_linear(n, num_classes), ToFloat32(),
    )
    return net


def construct(x: torch.Tensor, targets: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, W) of the construction for inputs ``x`` (n × d, float64), ``targets`` (n × C) and
    projection ``a`` (d): the interleaved thresholds and the triangular solve."""
    z = x @ a
    z_sorted, order = torch.sort(z)
    gaps = z_sorted[1:] - z_sorted[:-1]
    if len(gaps) and gaps.min() <= 0:
        i = int(torch.argmin(gaps))
        first, second = sorted((int(order[i]), int(order[i + 1])))
        raise GentestError(
            f"{NAME}: training inputs {first} and {second} have the same projection ⟨a, x⟩ (duplicate inputs?), "
            "so the construction cannot give them different labels; deduplicate the data"
        )
    n = len(z)
    span = (z_sorted[-1] - z_sorted[0]) if n > 1 else z.new_tensor(1.0)
    b = torch.empty_like(z_sorted)
    b[0] = z_sorted[0] - (span / n if span > 0 else 1.0)
    b[1:] = z_sorted[:-1] + gaps / 4
    A = torch.relu(z_sorted[:, None] - b[None, :])  # lower triangular, diagonal z_(i) − b_i > 0
    W = torch.linalg.solve_triangular(A, targets[order], upper=False)
    return b, W


def fit(spec, options: dict[str, Any], data, device: torch.device):
    from gentest.training import TrainResult

    start = time.perf_counter()
    dev = device_for_float64(device)
    x = data.x_train.to(dev).reshape(len(data.x_train), -1).double()
    n, d = x.shape
    a = torch.randn(d, generator=torch.Generator().manual_seed(spec.seed_for("init")), dtype=torch.float64).to(dev)
    Y = one_hot(data.y_train, data.num_classes, dev)
    b, W = construct(x, Y, a)
    net = build_network(d, n, data.num_classes).to(dev)
    with torch.no_grad():
        net[2].weight.copy_(a[None, :])
        net[3].bias.copy_(b)
        initial = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}  # W = 0
        net[5].weight.copy_(W.T)
        f_train = net[:-1](data.x_train.to(dev))
        f_test = net[:-1](data.x_test.to(dev))
    row = metrics_row(f_train, data.y_train, f_test, data.y_test, data.num_classes)
    metrics = final_metrics(
        [row], NAME, n_params=sum(p.numel() for p in net.parameters()), wall_s=time.perf_counter() - start, device=dev,
        max_train_residual=(f_train - Y).abs().max().item(),
    )
    return TrainResult(net.cpu().eval(), initial, [row], metrics)


def rebuild(options: dict[str, Any], state: dict[str, torch.Tensor], input_shape, num_classes: int) -> nn.Module:
    d, n = state["2.weight"].shape[1], state["3.bias"].shape[0]
    net = build_network(d, n, num_classes)
    net.load_state_dict(state)
    return net.eval()


def model_name(options: dict[str, Any]) -> str:
    return NAME
