"""Kernel interpolation: the minimum-norm Gaussian-kernel machine of Zhang et al. (2017), §5.

With features φ (see :mod:`gentest.learners.features`) and the Gaussian (RBF) kernel
k(x, x') = exp(−‖φ(x) − φ(x')‖² / (2σ²)), the learner solves (K + λI) α = Y in float64 for
the n × C coefficients α, K_ij = k(x_i, x_j) on the training inputs and Y their one-hot labels
(the paper's equation (3), Kα = y, with λ = ``ridge`` = 0 by default; λ > 0 is the paper's
"adding regularization" row). It predicts f(x) = K(x, X) α and the class argmax_k f_k(x).
With λ = 0 it interpolates: f(x_i) = Y_i exactly, for any labels, random ones included.

The bandwidth σ is a number > 0 or ``"median"`` (default): the median of the pairwise
distances ‖φ(x_i) − φ(x_j)‖, i < j, on the training inputs (the median heuristic).

The RKHS norm of f = Σ_i α_i k(x_i, ·) (one function per class) is ‖f_k‖²_H = α_kᵀ K α_k,
so over the C classes ‖f‖²_H = Σ_k α_kᵀKα_k = trace(αᵀKα) (:meth:`KernelSolution.rkhs_norm`).

Stored state (the run's "final" weights, through :class:`KernelMachine`'s buffers): α, σ, λ
and the feature transform's buffers; the "initial" weights are the same with α = 0. The training inputs are not stored again: they are the
run's training data, which the store regenerates and checks bit for bit before any measure
sees them (``train_inputs_sha256``), and :meth:`KernelMachine.solution` takes them from there.
A kernel machine is not a neural network: its ``forward`` and its parameter/module walks
raise :class:`~gentest.errors.NotApplicable`, so measures that need an ``nn.Module`` say n/a.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from gentest.errors import GentestError, NotApplicable
from gentest.learners.base import batched, final_metrics, metrics_row, one_hot
from gentest.learners.features import build_features, validate_features
from gentest.learners.linalg import DEFAULT_MEMORY_GB, check_memory, device_for_float64, solve_spd

NAME = "kernel-interpolation"
OPTIONS: dict[str, Any] = {"bandwidth": "median", "features": "pixels", "ridge": 0.0, "kernel_memory_gb": DEFAULT_MEMORY_GB}
NO_MODULE = f"{NAME} has no nn.Module (it is a kernel machine): measures that need one do not apply; use ctx.kernel()"


def validate(options: dict[str, Any]) -> dict[str, Any]:
    """Completed, canonical options; a GentestError naming the option otherwise."""
    _unknown(options, OPTIONS)
    out = {**OPTIONS, **options}
    bw = out["bandwidth"]
    if not (bw == "median" or (_is_number(bw) and bw > 0)):
        raise GentestError(f"option 'bandwidth' must be 'median' or a number > 0, got {bw!r}")
    if not (_is_number(out["ridge"]) and out["ridge"] >= 0):
        raise GentestError(f"option 'ridge' must be a number >= 0, got {out['ridge']!r}")
    if not (_is_number(out["kernel_memory_gb"]) and out["kernel_memory_gb"] > 0):
        raise GentestError(f"option 'kernel_memory_gb' must be a number > 0, got {out['kernel_memory_gb']!r}")
    out["bandwidth"] = bw if bw == "median" else float(bw)
    out["ridge"] = float(out["ridge"])
    out["kernel_memory_gb"] = float(out["kernel_memory_gb"])
    out["features"] = validate_features(out["features"])
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _unknown(options: dict[str, Any], allowed: dict[str, Any]) -> None:
    for key in options:
        if key not in allowed:
            raise GentestError(f"option '{key}' is unknown; allowed: {', '.join(allowed)}")


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² (float64, clamped at 0 against rounding)."""
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp_min_(0)


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """K_ij = exp(−‖a_i − b_j‖² / (2σ²))."""
    return torch.exp(-squared_distances(a, b) / (2 * bandwidth**2))


def median_bandwidth(features: torch.Tensor) -> float:
    """The median heuristic: median of ‖φ_i − φ_j‖ over pairs i < j (torch's lower median)."""
    n = len(features)
    if n < 2:
        raise GentestError(f"{NAME}: the median bandwidth needs at least 2 training points, got {n}")
    d2 = squared_distances(features, features)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=d2.device), diagonal=1)
    return torch.median(d2[upper]).sqrt().item()


@dataclass
class KernelSolution:
    """A fitted kernel machine: α (n × C), training features (n × D), σ and λ, all float64.

    ``gram()`` is K on the training inputs (n × n, built on demand); ``rkhs_norm()`` is
    ‖f‖_H = √trace(αᵀKα); ``predict(phi)`` is K(φ, X)α for features ``phi``.
    """

    alpha: torch.Tensor
    features: torch.Tensor
    bandwidth: float
    ridge: float

    def gram(self) -> torch.Tensor:
        return gaussian_kernel(self.features, self.features, self.bandwidth)

    def rkhs_norm_sq(self) -> float:
        """trace(αᵀKα) = Σ_k α_kᵀ K α_k: the squared RKHS norm over the C class functions."""
        return torch.einsum("ik,ij,jk->", self.alpha, self.gram(), self.alpha).item()

    def rkhs_norm(self) -> float:
        return max(self.rkhs_norm_sq(), 0.0) ** 0.5

    def predict(self, phi: torch.Tensor) -> torch.Tensor:
        return batched(lambda p: gaussian_kernel(p.to(self.features), self.features, self.bandwidth) @ self.alpha, phi)


class KernelMachine(nn.Module):
    """Holds a kernel solution's state as buffers so the run store keeps it like weights.

    It is deliberately not usable as a network: ``forward``, ``parameters()``,
    ``named_parameters()``, ``modules()`` and ``named_modules()`` raise NotApplicable.
    ``state_dict``/``load_state_dict``/``to``/``eval``/deepcopy work as for any module.
    """

    def __init__(self, features: nn.Module, n: int, num_classes: int, ridge: float):
        super().__init__()
        self.features = features
        self.register_buffer("alpha", torch.zeros(n, num_classes, dtype=torch.float64))
        self.register_buffer("bandwidth", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("ridge", torch.tensor(float(ridge), dtype=torch.float64))

    def solution(self, x_train: torch.Tensor) -> KernelSolution:
        """The solution, with the training features recomputed from ``x_train`` (the run's
        training inputs as trained)."""
        with torch.no_grad():
            phi = batched(self.features, x_train.to(self.alpha.device))
        if len(phi) != len(self.alpha):
            raise GentestError(f"{NAME}: {len(phi)} training inputs but α has {len(self.alpha)} rows")
        return KernelSolution(self.alpha.clone(), phi, float(self.bandwidth), float(self.ridge))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotApplicable(NO_MODULE)

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        raise NotApplicable(NO_MODULE)

    def named_parameters(self, *args, **kwargs):
        raise NotApplicable(NO_MODULE)

    def modules(self):
        raise NotApplicable(NO_MODULE)

    def named_modules(self, *args, **kwargs):
        raise NotApplicable(NO_MODULE)


def fit(spec, options: dict[str, Any], data, device: torch.device):
    """Solve (K + λI)α = Y on ``data`` (already randomized) and return a TrainResult."""
    from gentest.training import TrainResult

    start = time.perf_counter()
    dev = device_for_float64(device)
    n = len(data.y_train)
    check_memory(NAME, n, options["kernel_memory_gb"])
    generator = torch.Generator().manual_seed(spec.seed_for("features"))
    features = build_features(options["features"], data.input_shape, generator).to(dev)
    with torch.no_grad():
        phi = batched(features, data.x_train.to(dev))
        phi_test = batched(features, data.x_test.to(dev))
    ridge = options["ridge"]
    if ridge == 0:
        _refuse_duplicates(phi, options["features"]["name"])
    bandwidth = median_bandwidth(phi) if options["bandwidth"] == "median" else options["bandwidth"]
    K = gaussian_kernel(phi, phi, bandwidth)
    Y = one_hot(data.y_train, data.num_classes, dev)
    system = K + ridge * torch.eye(n, dtype=K.dtype, device=dev) if ridge else K
    alpha, solver, residual = solve_spd(
        system, Y, NAME, "duplicate or near-duplicate training inputs make K singular: deduplicate them, "
        "use a smaller bandwidth, or set ridge > 0",
    )
    del system
    f_train = K @ alpha
    del K
    solution = KernelSolution(alpha, phi, bandwidth, ridge)
    f_test = solution.predict(phi_test)
    row = metrics_row(f_train, data.y_train, f_test, data.y_test, data.num_classes)
    machine = KernelMachine(features.cpu(), n, data.num_classes, ridge)
    machine.bandwidth.fill_(bandwidth)
    initial = {k: v.clone() for k, v in machine.state_dict().items()}  # α = 0: nothing fitted yet
    machine.alpha.copy_(alpha.cpu())
    metrics = final_metrics(
        [row], NAME, n_params=alpha.numel(), wall_s=time.perf_counter() - start, device=dev,
        bandwidth=bandwidth, solver=solver, relative_residual=residual,
        max_train_residual=(f_train - Y).abs().max().item(),
    )
    return TrainResult(machine.eval(), initial, [row], metrics)


def _refuse_duplicates(phi: torch.Tensor, features: str) -> None:
    _, inverse, counts = torch.unique(phi, dim=0, return_inverse=True, return_counts=True)
    if len(counts) == len(phi):
        return
    group = int(torch.nonzero(counts > 1)[0])
    i, j = torch.nonzero(inverse == group).flatten()[:2].tolist()
    raise GentestError(
        f"{NAME}: training inputs {i} and {j} are identical after '{features}' features, so K is singular and "
        "their labels cannot both be interpolated; deduplicate the data or set ridge > 0"
    )


def rebuild(options: dict[str, Any], state: dict[str, torch.Tensor], input_shape, num_classes: int) -> nn.Module:
    """The stored kernel machine (its buffers loaded from ``state``)."""
    features = build_features(options["features"], tuple(input_shape))
    machine = KernelMachine(features, len(state["alpha"]), num_classes, options["ridge"])
    machine.load_state_dict(state)
    return machine.eval()


def model_name(options: dict[str, Any]) -> str:
    return f"{NAME}/{options['features']['name']}" + (f"/ridge={options['ridge']:g}" if options["ridge"] else "")
