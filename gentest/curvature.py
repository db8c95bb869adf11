"""Curvature helpers: Hessian-vector products of a training loss, Lanczos, and stochastic
Lanczos quadrature (SLQ). No measures live here (see ``measures/hessian.py``).

- :class:`LossHessian` is the Hessian H = ∇²_w L(w) of a mean loss over one fixed batch,
  w.r.t. every parameter that requires grad, exposed as a matrix-vector product on flat
  vectors. The gradient is built once with ``create_graph=True`` and each product is one
  extra backward pass (reverse-over-reverse, "double backward", as in PyHessian and
  performance.md §3.2). It counts the products it makes (``hvps``).
- :func:`lanczos` runs m steps of the symmetric Lanczos recurrence with *full*
  reorthogonalization (classical Gram–Schmidt, applied twice) and returns the tridiagonal
  matrix T as its diagonal α and off-diagonal β.
- :func:`ritz_residuals` gives the Ritz values of T with their residual bounds (how far each
  can be from an eigenvalue of H): the top Ritz value is λ_max once its bound is small.
- :func:`gauss_quadrature` turns T into the nodes and weights of Gaussian quadrature:
  nodes θ_k = eigenvalues of T (Ritz values), weights τ_k = (first component of the k-th
  eigenvector)², computed with ``torch.linalg.eigh`` in float64. For a unit start vector v,
  Σ_k τ_k f(θ_k) ≈ vᵀ f(H) v, exactly so for polynomials of degree ≤ 2m − 1, and exactly for
  every f once the Krylov space is invariant (m = dim, or an earlier breakdown).
- :func:`deflated_trace` estimates tr(H) from a Lanczos run kept with its basis Q: exactly
  tr(QᵀHQ) = Σ α_k on the Krylov space, plus Hutchinson on the rest,
  tr((I − QQᵀ)H(I − QQᵀ)), with probes projected off Q (Hutch++, Meyer, Musco, Musco &
  Woodruff, "Hutch++: optimal stochastic trace estimation", SOSA 2021, Algorithm 1, with the
  Krylov space of the Lanczos run as the sketch, as in Chen & Hallman's "Krylov-aware
  stochastic trace estimation", SIMAX 2023).
- :func:`slq` averages that over random Rademacher probes: the spectral density
  φ(t) = (1/P) Σ_i δ(t − λ_i) of H is approximated by (1/n_v) Σ_l Σ_k τ_k^l δ(t − θ_k^l)
  (Ghorbani, Krishnan & Xiao, "An investigation into neural net optimization via Hessian
  eigenvalue density", ICML 2019; Lin, Saad & Yang, "Approximating spectral densities of large
  matrices", SIAM Review 2016). E[vᵀ f(H) v] = tr f(H)/P for a normalized Rademacher v, so
  Σ τ = 1 and Σ τ θ ≈ tr(H)/P.

PyHessian's own ``density()`` cannot be used: PyPI's pyhessian 0.1 calls ``torch.eig``,
removed from PyTorch (anchors.md §2.5), and it uses the global RNG.

All randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

Matvec = Callable[[torch.Tensor], torch.Tensor]


class LossHessian:
    """Hessian of ``loss_fn(model(x), y)`` w.r.t. the model's trainable parameters, as a matvec.

    The model is used as given (put it in eval mode first if that is what you want) and its
    parameters are not modified; ``.grad`` fields are not touched (``torch.autograd.grad``).
    Parameters the loss does not depend on get zero rows. Keep the object only as long as
    needed: it holds the double-backward graph.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor):
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        self.dim = sum(self.sizes)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(self.loss, self.params, create_graph=True, allow_unused=True)
        # A gradient with no graph (None, or constant in w) contributes zero Hessian rows.
        self._live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self._grads = [grads[i] for i in self._live]
        self.hvps = 0

    def unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        return [c.reshape(s) for c, s in zip(torch.split(v, self.sizes), self.shapes)]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat vector v of length ``dim`` (in the parameters' dtype and device)."""
        self.hvps += 1
        if not self._grads:
            return torch.zeros_like(v)
        pieces = self.unflatten(v.to(self.dtype))
        hv = torch.autograd.grad(
            self._grads,
            [self.params[i] for i in self._live],
            grad_outputs=[pieces[i] for i in self._live],
            retain_graph=True,
            allow_unused=True,
        )
        out = [torch.zeros(n, dtype=self.dtype, device=self.device) for n in self.sizes]
        for i, h in zip(self._live, hv):
            if h is not None:
                out[i] = h.detach().reshape(-1)
        return torch.cat(out)

    __call__ = matvec


def subsample(x: torch.Tensor, y: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples drawn without replacement with ``generator`` (all of them, in order, if
    there are at most ``n``)."""
    if len(y) <= n:
        return x, y
    idx = torch.randperm(len(y), generator=generator)[:n].to(y.device)
    return x[idx], y[idx]


def rademacher(dim: int, generator: torch.Generator, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """A vector of independent ±1 entries, drawn from ``generator`` (on the CPU, then moved)."""
    v = torch.randint(0, 2, (dim,), generator=generator).to(dtype) * 2 - 1
    return v.to(device)


@dataclass
class Tridiagonal:
    """The Lanczos matrix T: diagonal ``alpha`` (k,) and off-diagonal ``beta`` (k − 1,), float64.

    ``residual`` is β_k, the norm of the (reorthogonalized) vector H q_k − α_k q_k − β_{k−1} q_{k−1}
    left after the last step: H Q_k = Q_k T + β_k q_{k+1} e_kᵀ. It is 0 (to rounding) when the
    Krylov space is invariant; see :func:`ritz_residuals`.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    residual: float = 0.0
    basis: torch.Tensor | None = None  # Q (len(alpha) × dim), kept only when asked for

    def dense(self) -> torch.Tensor:
        t = torch.diag(self.alpha)
        if len(self.beta):
            t = t + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)
        return t


def lanczos(
    matvec: Matvec, v0: torch.Tensor, steps: int, breakdown_tol: float | None = None, keep_basis: bool = False
) -> Tridiagonal:
    """``steps`` Lanczos steps from ``v0`` with full reorthogonalization; T as α, β.

    Every new vector is orthogonalized against *all* previous ones, twice (classical
    Gram–Schmidt; "twice is enough"), so T stays accurate in floating point. It stops early
    when β_j ≤ ``breakdown_tol``·max|T| (the Krylov space is invariant: the quadrature is then
    exact); the default tolerance is √eps of ``v0``'s dtype. Costs ``len(alpha)`` matvecs and
    keeps ``len(alpha)`` vectors of length dim; ``keep_basis=True`` returns them as ``basis``.
    """
    dim = v0.numel()
    steps = min(int(steps), dim)
    if steps < 1:
        raise ValueError("lanczos needs at least one step")
    tol = torch.finfo(v0.dtype).eps ** 0.5 if breakdown_tol is None else breakdown_tol
    basis = torch.empty(steps, dim, dtype=v0.dtype, device=v0.device)
    basis[0] = v0 / torch.linalg.vector_norm(v0)
    alphas: list[float] = []
    betas: list[float] = []
    scale = 0.0
    residual = 0.0
    for j in range(steps):
        w = matvec(basis[j]).to(v0.dtype)
        alpha = torch.dot(w, basis[j])
        alphas.append(float(alpha))
        # Full reorthogonalization against basis[0..j] (this also removes α_j q_j and β_{j-1} q_{j-1}).
        q = basis[: j + 1]
        for _ in range(2):
            w = w - q.T @ (q @ w)
        beta = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(alphas[-1]), beta, betas[-1] if betas else 0.0)
        if beta <= tol * max(scale, torch.finfo(v0.dtype).tiny):
            residual = beta  # breakdown: the Krylov space is invariant
            break
        if j == steps - 1:
            residual = beta  # the last step's residual, kept for the Ritz error bounds
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    return Tridiagonal(
        torch.tensor(alphas, dtype=torch.float64),
        torch.tensor(betas, dtype=torch.float64),
        residual,
        basis[: len(alphas)] if keep_basis else None,
    )


@dataclass(frozen=True)
class TraceEstimate:
    value: float
    stderr: float  # standard error of the Hutchinson part (the Krylov part is exact)
    matvecs: int  # the residual probes' products (the Lanczos run's are counted by its caller)
    krylov_part: float


def deflated_trace(matvec: Matvec, t: Tridiagonal, probes: int, generator: torch.Generator) -> TraceEstimate:
    """tr(H) = tr(QᵀHQ) + tr(PHP), P = I − QQᵀ, Q the orthonormal basis kept by :func:`lanczos`.

    Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021, Algorithm 1): the trace on a subspace
    that holds the dominant eigendirections is computed exactly and Hutchinson's estimator
    (Rademacher probes g, E[gᵀAg] = tr A) is used only on the rest, whose Frobenius norm — and
    so the estimator's variance, 2(‖A‖²_F − Σ A_ii²) per probe — is much smaller when the
    spectrum has a few large outliers, as a trained network's Hessian has. Here the subspace is
    the Krylov space of the Lanczos run (Chen & Hallman, SIMAX 2023), which costs no extra
    products: tr(QᵀHQ) = Σ_k q_kᵀHq_k = Σ_k α_k. Each probe is projected off Q (twice, as in
    the Lanczos reorthogonalization) and costs one product: gᵀPHPg with Pg computed once.
    Unbiased for any Q (tr H = tr(QQᵀH) + tr(PH) and tr(PH) = tr(PHP)). ``stderr`` is the sample
    standard deviation of the probes over √probes (NaN with one probe).
    """
    if t.basis is None:
        raise ValueError("deflated_trace needs the Lanczos basis (lanczos(..., keep_basis=True))")
    q = t.basis
    krylov = float(t.alpha.sum())
    samples = []
    for _ in range(probes):
        g = rademacher(q.shape[1], generator, q.dtype, q.device)
        for _ in range(2):
            g = g - q.T @ (q @ g)
        samples.append(float(torch.dot(g, matvec(g).to(q.dtype))))
    rest = torch.tensor(samples, dtype=torch.float64)
    stderr = rest.std().item() / math.sqrt(probes) if probes > 1 else float("nan")
    return TraceEstimate(krylov + (rest.mean().item() if probes else 0.0), stderr, probes, krylov)


def gauss_quadrature(t: Tridiagonal) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes (Ritz values, ascending) and weights (squared first eigenvector components) of T."""
    evals, evecs = torch.linalg.eigh(t.dense())
    return evals, evecs[0].pow(2)


def ritz_residuals(t: Tridiagonal) -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz values θ_k (ascending) of T and their residual norms ‖H y_k − θ_k y_k‖ = β·|s_{k,last}|.

    ``s_k`` is the k-th unit eigenvector of T and y_k = Q s_k the Ritz vector. For a symmetric
    H, each interval [θ_k − r_k, θ_k + r_k] holds an eigenvalue of H (Parlett, "The Symmetric
    Eigenvalue Problem", 1998, Thm 4.5.1 / §13.2): r_k bounds how far the Ritz value can be from
    the spectrum, in exact arithmetic with the full reorthogonalization used here.
    """
    evals, evecs = torch.linalg.eigh(t.dense())
    return evals, (t.residual * evecs[-1]).abs()


def slq(
    matvec: Matvec,
    dim: int,
    probes: int,
    steps: int,
    generator: torch.Generator,
    dtype=torch.float32,
    device="cpu",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stochastic Lanczos quadrature: one (nodes, weights) pair per Rademacher probe.

    The spectral density of the dim × dim symmetric operator is approximated by the average over
    probes of Σ_k τ_k δ(t − θ_k); each probe's weights sum to 1. Costs about probes × steps
    matvecs (fewer on breakdown).
    """
    out = []
    for _ in range(probes):
        v = rademacher(dim, generator, dtype, device)
        out.append(gauss_quadrature(lanczos(matvec, v, steps)))
    return out
