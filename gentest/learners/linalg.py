"""Float64 linear algebra for the closed-form learners: a memory budget and an SPD solve.

An n × n float64 matrix takes n²·8 bytes (n = 4,000 MNIST-1D points → 128 MB; n = 50,000
CIFAR-10 images → 20 GB). At its peak a solve holds several: the kernel learner the squared
distances, K and its Cholesky factor (3), the linear learner the Gram matrix and its factor
(2). The budget is checked against that before anything is built: a run that would not fit
is refused with one sentence instead of thrashing the machine.
"""

from __future__ import annotations

import math

import torch

from gentest.errors import GentestError

DEFAULT_MEMORY_GB = 4.0


def gram_bytes(n: int) -> int:
    """Bytes of one n × n float64 matrix."""
    return n * n * 8


def check_memory(who: str, n: int, budget_gb: float, what: str = "kernel matrix", copies: int = 3) -> None:
    """Refuse (GentestError) when ``copies`` n × n float64 matrices exceed ``budget_gb``."""
    need = copies * gram_bytes(n)
    if need > budget_gb * 1e9:
        largest = int(math.isqrt(int(budget_gb * 1e9 / (8 * copies))))
        raise GentestError(
            f"{who}: n = {n:,} training points need {need / 1e9:.1f} GB for the {n:,} × {n:,} float64 {what} "
            f"({copies} such matrices at the peak, n²·8 bytes each), over kernel_memory_gb = {budget_gb:g}; "
            f"use train_size ≤ {largest:,} or raise kernel_memory_gb"
        )


def device_for_float64(device: torch.device) -> torch.device:
    """MPS has no float64: solve on the CPU there; CUDA and CPU as given."""
    return torch.device("cpu") if device.type == "mps" else device


def solve_spd(matrix: torch.Tensor, rhs: torch.Tensor, who: str, singular_hint: str) -> tuple[torch.Tensor, str, float]:
    """Solve ``matrix @ x = rhs`` for a symmetric positive (semi)definite float64 matrix.

    Cholesky first; if the matrix is not numerically positive definite, LU. Returns
    ``(x, solver, relative residual)``. A singular matrix, or a solution whose relative
    residual ‖Ax − b‖/‖b‖ exceeds 1e-6, is a GentestError naming ``who`` with ``singular_hint``.
    """
    factor, info = torch.linalg.cholesky_ex(matrix)
    if int(info) == 0:
        x, solver = torch.cholesky_solve(rhs, factor), "cholesky"
    else:
        del factor
        try:
            x, solver = torch.linalg.solve(matrix, rhs), "lu"
        except RuntimeError:  # torch.linalg.LinAlgError is a RuntimeError
            raise GentestError(f"{who}: the matrix is singular, so the system cannot be solved; {singular_hint}") from None
    residual = (torch.linalg.norm(matrix @ x - rhs) / torch.linalg.norm(rhs).clamp_min(1e-300)).item()
    if not math.isfinite(residual) or residual > 1e-6:
        raise GentestError(
            f"{who}: the matrix is numerically singular (relative residual {residual:.1e} after {solver}); {singular_hint}"
        )
    return x, solver, residual
