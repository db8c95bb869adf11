"""gentest.curvature against dense linear algebra on tiny models.

The reference Hessian is ``torch.autograd.functional.hessian`` of the loss as a function of the
flattened parameter vector (``torch.func.functional_call``), in float64; its eigenpairs come
from ``numpy.linalg.eigh``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gentest.curvature import LossHessian, gauss_quadrature, lanczos, rademacher, slq, subsample


def tanh_mlp(seed: int = 0, dtype=torch.float64) -> nn.Module:
    """3 -> 4 (tanh) -> 3 with biases (P = 31), weights drawn from a seeded generator."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
    return model


def tiny_data(n: int = 12, seed: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g).to(dtype), torch.randint(0, 3, (n,), generator=g)


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇² of the mean cross-entropy w.r.t. the flat parameter vector, float64."""
    m = copy.deepcopy(model).double()
    named = [(n, p.shape) for n, p in m.named_parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    def loss(theta):
        params, i = {}, 0
        for name, shape in named:
            params[name] = theta[i : i + shape.numel()].reshape(shape)
            i += shape.numel()
        return F.cross_entropy(functional_call(m, params, (x.double(),)), y)

    return torch.autograd.functional.hessian(loss, theta0)


def test_hvp_matches_dense_hessian_vector_product():
    model = tanh_mlp()
    x, y = tiny_data()
    dense = dense_hessian(model, x, y)
    H = LossHessian(model, nn.CrossEntropyLoss(), x, y)
    assert H.dim == dense.shape[0] == 31
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(H.dim, generator=g, dtype=torch.float64)
        torch.testing.assert_close(H.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    assert H.hvps == 3
    # The dense Hessian is symmetric and H e_j is its j-th column.
    e = torch.zeros(H.dim, dtype=torch.float64)
    e[5] = 1.0
    torch.testing.assert_close(H.matvec(e), dense[:, 5], rtol=1e-10, atol=1e-12)


def test_hvp_leaves_model_untouched_and_handles_unused_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    unused = nn.Linear(2, 2).double()  # parameters the loss does not depend on: zero rows
    holder = nn.ModuleDict({"net": model, "unused": unused})

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.holder = holder

        def forward(self, x):
            return self.holder["net"](x)

    wrapped = Wrapped()
    before = {k: v.clone() for k, v in wrapped.state_dict().items()}
    x, y = tiny_data()
    H = LossHessian(wrapped, nn.CrossEntropyLoss(), x, y)
    v = torch.ones(H.dim, dtype=torch.float64)
    hv = H.matvec(v)
    n_net = sum(p.numel() for p in model.parameters())
    assert torch.all(hv[n_net:] == 0)
    torch.testing.assert_close(hv[:n_net], dense_hessian(model, x, y) @ v[:n_net], rtol=1e-10, atol=1e-12)
    assert all(torch.equal(before[k], v) for k, v in wrapped.state_dict().items())
    assert all(p.grad is None for p in wrapped.parameters())


def test_full_lanczos_quadrature_reproduces_quadratic_forms_of_matrix_functions():
    """With m = P steps (or an earlier breakdown) the Krylov space is invariant, so the Gauss
    quadrature is exact: Σ_k τ_k f(θ_k) = vᵀ f(H) v / ‖v‖² for every f."""
    model = tanh_mlp()
    x, y = tiny_data()
    dense = dense_hessian(model, x, y)
    lam, vecs = np.linalg.eigh(dense.numpy())
    H = LossHessian(model, nn.CrossEntropyLoss(), x, y)
    v = rademacher(H.dim, torch.Generator().manual_seed(0), torch.float64)
    nodes, weights = gauss_quadrature(lanczos(H.matvec, v, H.dim))
    coeffs = vecs.T @ (v.numpy() / np.linalg.norm(v.numpy()))  # v in the eigenbasis
    functions = {
        "1": lambda t: np.ones_like(t),
        "t": lambda t: t,
        "t^3": lambda t: t**3,
        "exp": lambda t: np.exp(t / np.abs(lam).max()),
        "|t|": np.abs,
        "sqrt(|t|)": lambda t: np.sqrt(np.abs(t)),
    }
    for name, f in functions.items():
        quad = float((weights.numpy() * f(nodes.numpy())).sum())
        exact = float((coeffs**2 * f(lam)).sum())
        assert quad == pytest.approx(exact, rel=1e-7, abs=1e-12), name
    # The Ritz values are eigenvalues of H (not all of them if the probe misses an eigenspace).
    for node in nodes.numpy():
        assert np.abs(lam - node).min() < 1e-8 * np.abs(lam).max()
    assert nodes[-1].item() == pytest.approx(lam.max(), rel=1e-9)


def test_partial_lanczos_is_exact_for_polynomials_up_to_degree_2m_minus_1():
    model = tanh_mlp(seed=4)
    x, y = tiny_data(seed=5)
    dense = dense_hessian(model, x, y)
    H = LossHessian(model, nn.CrossEntropyLoss(), x, y)
    v = rademacher(H.dim, torch.Generator().manual_seed(1), torch.float64)
    u = v / v.norm()
    m = 3
    nodes, weights = gauss_quadrature(lanczos(H.matvec, v, m))
    assert len(nodes) == m and H.hvps == m
    for j in range(2 * m):  # degrees 0 .. 2m − 1
        exact = (u @ torch.linalg.matrix_power(dense, j) @ u).item()
        quad = (weights * nodes**j).sum().item()
        assert quad == pytest.approx(exact, rel=1e-8, abs=1e-14), j


def test_lanczos_stops_at_breakdown_on_a_low_rank_operator():
    """An operator of rank 2: the Krylov space of any start vector has dimension ≤ 3."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(20, 2, generator=g, dtype=torch.float64)
    mat = a @ a.T
    calls = []

    def matvec(v):
        calls.append(1)
        return mat @ v

    v = torch.randn(20, generator=g, dtype=torch.float64)
    t = lanczos(matvec, v, 15)
    assert len(t.alpha) <= 3 and len(t.beta) == len(t.alpha) - 1
    nodes, weights = gauss_quadrature(t)
    u = v / v.norm()
    for j in range(6):  # exact for every polynomial once the space is invariant
        exact = (u @ torch.linalg.matrix_power(mat, j) @ u).item()
        assert (weights * nodes**j).sum().item() == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_slq_density_moments():
    """Σ τ = 1 per probe; Σ τ θ = vᵀHv/P exactly per probe (v Rademacher, ‖v‖² = P), hence
    tr(H)/P in expectation: checked against the dense trace within 5 standard errors, the
    variance of vᵀHv for Rademacher v being 2 Σ_{i≠j} H_ij²."""
    model = tanh_mlp(seed=2)
    x, y = tiny_data(seed=3)
    dense = dense_hessian(model, x, y)
    H = LossHessian(model, nn.CrossEntropyLoss(), x, y)
    P = H.dim
    probes = 200
    out = slq(H.matvec, P, probes, 6, torch.Generator().manual_seed(7), dtype=torch.float64)
    replay = torch.Generator().manual_seed(7)
    means = []
    for nodes, weights in out:
        v = rademacher(P, replay, torch.float64)
        assert weights.sum().item() == pytest.approx(1.0, abs=1e-12)
        mean = (weights * nodes).sum().item()
        assert mean == pytest.approx((v @ dense @ v).item() / P, rel=1e-9, abs=1e-14)
        means.append(mean)
        # Each probe's second moment is exact too (degree 2 ≤ 2m − 1).
        assert (weights * nodes**2).sum().item() == pytest.approx((v @ dense @ dense @ v).item() / P, rel=1e-9)
    off_diag_sq = (dense.pow(2).sum() - dense.diagonal().pow(2).sum()).item()
    stderr = np.sqrt(2 * off_diag_sq / probes) / P
    assert abs(np.mean(means) - dense.trace().item() / P) < 5 * stderr


def test_subsample_is_seeded_and_without_replacement():
    x = torch.arange(50).float()[:, None]
    y = torch.arange(50)
    a = subsample(x, y, 20, torch.Generator().manual_seed(0))
    b = subsample(x, y, 20, torch.Generator().manual_seed(0))
    assert torch.equal(a[1], b[1]) and len(set(a[1].tolist())) == 20
    assert torch.equal(a[0][:, 0].long(), a[1])
    full = subsample(x, y, 50, torch.Generator().manual_seed(0))
    assert torch.equal(full[1], y)
