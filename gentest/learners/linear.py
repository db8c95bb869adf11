"""The minimum-norm linear interpolant and SGD from zero on the same problem (Zhang et al. 2017, §5).

On features Φ = φ(X) (n × D, a fixed lift, ``random-fourier`` by default so that D > n) the
system Φw = Y (one-hot, n × C) has infinitely many solutions when rank Φ = n. SGD on the
squared loss started at w = 0 only ever adds multiples of the rows φ(x_i), so its limit lies in
their span, w = Φᵀc; with Φw = Y this is c = (ΦΦᵀ)⁻¹Y: the minimum-ℓ2-norm solution.

- ``linear-minnorm`` computes it in closed form (float64): w = Φᵀ(ΦΦᵀ)⁻¹Y by Cholesky when
  D ≥ n, the least-squares solution (ΦᵀΦ)⁻¹ΦᵀY when D < n, and ``torch.linalg.lstsq``'s
  minimum-norm least-squares solution (gelsd, on the CPU) when the Gram matrix is singular.
- ``linear-sgd`` runs SGD with heavy-ball ``momentum`` (0.9, as gentest's SGD; no weight decay)
  on ½‖φ(x)ᵀw − y‖², averaged over mini-batches of ``batch_size``, from w = 0, for at most
  ``epochs`` epochs or until the relative residual ‖Φw − Y‖/‖Y‖ is below ``tol``. Every update
  (momentum included) is a combination of rows φ(x_i), so the iterates stay in their span and
  a limit that interpolates is the minimum-norm solution. ``lr = "auto"`` is 1/max_i‖φ(x_i)‖².
  Its metrics record
  ``minnorm_relative_distance`` = ‖w − w*‖/‖w*‖ to the closed-form solution w*.

Both are ``nn.Sequential(ToFloat64, φ, Linear(D, C, bias=False), ToFloat32)`` networks: the
existing norm measures see one weight matrix (ctx.layers()), and ``ctx.linear_solution()``
gives w directly. The initial weights are w = 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gentest.errors import GentestError, NotApplicable
from gentest.learners.base import ToFloat32, ToFloat64, batched, final_metrics, metrics_row, one_hot, zero_linear
from gentest.learners.features import build_features, validate_features
from gentest.learners.linalg import DEFAULT_MEMORY_GB, check_memory, device_for_float64, solve_spd

MINNORM, SGD = "linear-minnorm", "linear-sgd"
OPTIONS: dict[str, dict[str, Any]] = {
    MINNORM: {"features": "random-fourier", "kernel_memory_gb": DEFAULT_MEMORY_GB},
    SGD: {"features": "random-fourier", "kernel_memory_gb": DEFAULT_MEMORY_GB,
          "lr": "auto", "momentum": 0.9, "batch_size": 16, "epochs": 300, "tol": 1e-6},
}


def validate(name: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = OPTIONS[name]
    for key in options:
        if key not in allowed:
            raise GentestError(f"option '{key}' is unknown; allowed: {', '.join(allowed)}")
    out = {**allowed, **options}
    out["features"] = validate_features(out["features"])
    if not (_number(out["kernel_memory_gb"]) and out["kernel_memory_gb"] > 0):
        raise GentestError(f"option 'kernel_memory_gb' must be a number > 0, got {out['kernel_memory_gb']!r}")
    out["kernel_memory_gb"] = float(out["kernel_memory_gb"])
    if name == SGD:
        if not (out["lr"] == "auto" or (_number(out["lr"]) and out["lr"] > 0)):
            raise GentestError(f"option 'lr' must be 'auto' or a number > 0, got {out['lr']!r}")
        for key in ("batch_size", "epochs"):
            if not (isinstance(out[key], int) and not isinstance(out[key], bool) and out[key] >= 1):
                raise GentestError(f"option '{key}' must be an integer >= 1, got {out[key]!r}")
        if not (_number(out["momentum"]) and 0 <= out["momentum"] < 1):
            raise GentestError(f"option 'momentum' must be a number in [0, 1), got {out['momentum']!r}")
        out["momentum"] = float(out["momentum"])
        if not (_number(out["tol"]) and out["tol"] > 0):
            raise GentestError(f"option 'tol' must be a number > 0, got {out['tol']!r}")
        out["tol"] = float(out["tol"])
        out["lr"] = out["lr"] if out["lr"] == "auto" else float(out["lr"])
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class LinearSolution:
    """The weights w (D × C, float64) of a linear learner on its features; ``l2_norm()`` = ‖w‖₂
    (the Frobenius norm over the C class columns)."""

    weight: torch.Tensor

    def l2_norm(self) -> float:
        return torch.linalg.norm(self.weight).item()


def minimum_norm_solution(phi: torch.Tensor, Y: torch.Tensor, who: str, budget_gb: float) -> tuple[torch.Tensor, str]:
    """The minimum-ℓ2-norm least-squares solution of Φw = Y (float64), and how it was solved."""
    n, d = phi.shape
    check_memory(who, min(n, d), budget_gb, what="Gram matrix", copies=2)
    try:
        if d >= n:
            c, solver, _ = solve_spd(phi @ phi.T, Y, who, "")
            return phi.T @ c, f"gram-{solver}"
        w, solver, _ = solve_spd(phi.T @ phi, phi.T @ Y, who, "")
        return w, f"normal-{solver}"
    except GentestError:  # rank-deficient features (e.g. duplicate inputs): the SVD-based solver
        w = torch.linalg.lstsq(phi.cpu(), Y.cpu(), driver="gelsd").solution
        return w.to(phi.device), "lstsq-gelsd"


def build_network(features: nn.Module, d: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(ToFloat64(), features, zero_linear(d, num_classes), ToFloat32())


def fit(spec, name: str, options: dict[str, Any], data, device: torch.device):
    from gentest.training import TrainResult

    start = time.perf_counter()
    dev = device_for_float64(device)
    generator = torch.Generator().manual_seed(spec.seed_for("features"))
    features = build_features(options["features"], data.input_shape, generator).to(dev)
    with torch.no_grad():
        phi = batched(features, data.x_train.to(dev))
        phi_test = batched(features, data.x_test.to(dev))
    Y = one_hot(data.y_train, data.num_classes, dev)
    n, d = phi.shape
    w_star, solver = minimum_norm_solution(phi, Y, name, options["kernel_memory_gb"])
    net = build_network(features, d, data.num_classes).to(dev)
    initial = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    extra: dict[str, Any] = {"n_features": d, "solver": solver}
    steps = 0
    if name == MINNORM:
        w = w_star
        curve = [metrics_row(phi @ w, data.y_train, phi_test @ w, data.y_test, data.num_classes)]
    else:
        w, curve, steps, lr = _sgd(spec, options, phi, Y, phi_test, data)
        extra |= {"lr": lr, "minnorm_relative_distance": (torch.linalg.norm(w - w_star) / torch.linalg.norm(w_star)).item(),
                  "relative_residual": (torch.linalg.norm(phi @ w - Y) / torch.linalg.norm(Y)).item()}
    with torch.no_grad():
        net[2].weight.copy_(w.T)
    extra["weight_l2"] = torch.linalg.norm(w).item()
    metrics = final_metrics(curve, name, n_params=d * data.num_classes, wall_s=time.perf_counter() - start,
                            device=dev, steps=steps, **extra)
    return TrainResult(net.cpu().eval(), initial, curve, metrics)


def _sgd(spec, options, phi, Y, phi_test, data):
    """Mini-batch SGD with momentum from w = 0 on the mean squared loss; returns (w, curve, steps, lr).

    On the CPU the loop runs single-threaded: its matrices are small (batch × D), and
    intra-op threads only add synchronization (5-10× slower on a loaded 2-core machine)."""
    if phi.device.type != "cpu":
        return _sgd_loop(spec, options, phi, Y, phi_test, data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _sgd_loop(spec, options, phi, Y, phi_test, data)
    finally:
        torch.set_num_threads(threads)


def _sgd_loop(spec, options, phi, Y, phi_test, data):
    n, d = phi.shape
    lr = options["lr"] if options["lr"] != "auto" else 1.0 / phi.pow(2).sum(1).max().item()
    order_gen = torch.Generator().manual_seed(spec.seed_for("order"))
    w = torch.zeros(d, Y.shape[1], dtype=torch.float64, device=phi.device)
    velocity = torch.zeros_like(w)
    y_norm = torch.linalg.norm(Y)
    curve = [metrics_row(phi @ w, data.y_train, phi_test @ w, data.y_test, data.num_classes)]
    steps, bs = 0, options["batch_size"]
    for epoch in range(1, options["epochs"] + 1):
        order = torch.randperm(n, generator=order_gen).to(phi.device)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            pb = phi[idx]
            velocity = options["momentum"] * velocity + pb.T @ (pb @ w - Y[idx]) / len(idx)
            w -= lr * velocity
            steps += 1
        f_train = phi @ w
        residual = (torch.linalg.norm(f_train - Y) / y_norm).item()
        if not math.isfinite(residual):
            raise GentestError(f"{SGD}: SGD diverged at epoch {epoch} with lr = {lr:g}; use a smaller lr or 'auto'")
        curve.append(metrics_row(f_train, data.y_train, phi_test @ w, data.y_test, data.num_classes, epoch, steps))
        if residual < options["tol"]:
            break
    return w, curve, steps, lr


def rebuild(name: str, options: dict[str, Any], state: dict[str, torch.Tensor], input_shape, num_classes: int) -> nn.Module:
    features = build_features(options["features"], tuple(input_shape))
    net = build_network(features, state["2.weight"].shape[1], num_classes)
    net.load_state_dict(state)
    return net.eval()


def solution_of(model: nn.Module) -> LinearSolution:
    """The linear learner's w (D × C) from its network."""
    if not (isinstance(model, nn.Sequential) and len(model) == 4 and isinstance(model[2], nn.Linear)):
        raise NotApplicable("not a linear learner's network")
    return LinearSolution(model[2].weight.detach().T.clone())


def model_name(name: str, options: dict[str, Any]) -> str:
    return f"{name}/{options['features']['name']}"
