"""Hessian measures against dense Hessians and closed forms on tiny models.

- Dense reference: ``torch.autograd.functional.hessian`` of the mean cross-entropy as a function
  of the flat parameter vector (``tests/test_curvature.dense_hessian``), eigenpairs from
  ``numpy.linalg.eigh``.
- Closed form: a model whose example i has logits (w_i, 0) for a one-hot input e_i, so the
  Hessian of the mean loss is diagonal, H_ii = σ(w_i)(1 − σ(w_i))/n. With 8 parameters the
  Lanczos run spans the whole space, so Hutch++'s Krylov part is the whole trace.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import measures.hessian as mh
from gentest.context import MeasureContext, RunCache
from gentest.curvature import lanczos, rademacher
from gentest.datasets import DataSplit
from gentest.registry import _MEASURES

from test_curvature import dense_hessian, tanh_mlp, tiny_data

NAMES = [
    "hessian.top_eigenvalue",
    "hessian.top_eigenvalue_x_weight_norm",
    "hessian.trace",
    "hessian.trace_x_weight_norm",
    "hessian.numerical_rank",
]


class PerExample(nn.Module):
    """Example i (one-hot input e_i) gets logits (w_i, 0): a diagonal Hessian."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))

    def forward(self, x):
        z = x @ self.w
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def make_cache(model, x, y, num_classes, key="in-memory") -> RunCache:
    return RunCache(model, model, DataSplit("tiny", x, y, x, y, num_classes), "cpu", key=key)


def call(name: str, cache: RunCache) -> tuple[float, dict]:
    ctx = MeasureContext(cache, name)
    value = _MEASURES[name].fn(ctx)
    assert isinstance(value, float)
    return value, ctx.recorded


def diagonal_case():
    w = [0.0, -1.0, -2.0, -3.0, 1.5, -4.0, 2.5, -5.0]
    n = len(w)
    x = torch.eye(n)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    s = torch.sigmoid(torch.tensor(w, dtype=torch.float64))
    diag = s * (1 - s) / n  # H_ii for the mean loss, whatever the label
    return PerExample(w), x, y, diag


def test_trace_is_exact_on_a_diagonal_hessian():
    model, x, y, diag = diagonal_case()
    cache = make_cache(model, x, y, 2)
    value, rec = call("hessian.trace", cache)
    assert value == pytest.approx(diag.sum().item(), rel=1e-5)
    # The Lanczos run (at most 8 products: the space is 8-dimensional) and a fixed number of probes.
    _, lanczos_rec = call("hessian.top_eigenvalue", cache)
    assert rec["hvps"] == lanczos_rec["hvps"] + mh.TRACE_PROBES
    assert rec["stderr"] == pytest.approx(0.0, abs=1e-6 * value)  # nothing left off the Krylov space
    norm_sq = sum(v * v for v in model.w.tolist())
    value2, rec2 = call("hessian.trace_x_weight_norm", cache)
    assert value2 == pytest.approx(diag.sum().item() * norm_sq, rel=1e-5)
    assert rec2["hvps"] == rec["hvps"]


def test_top_eigenvalue_on_a_diagonal_hessian():
    model, x, y, diag = diagonal_case()
    value, rec = call("hessian.top_eigenvalue", make_cache(model, x, y, 2))
    # 8 parameters, 50 Lanczos steps: the Krylov space is the whole space, θ_max is λ_max.
    assert value == pytest.approx(diag.max().item(), rel=1e-5)
    assert 1 <= rec["hvps"] <= 8 == len(diag)
    assert 0 <= rec["uncertainty"] == rec["ritz_residual"] < 1e-5 * value


@pytest.fixture(scope="module")
def tanh_case():
    x, y = tiny_data(n=20, seed=11, dtype=torch.float32)
    model = tanh_mlp(seed=12, dtype=torch.float32)
    dense = dense_hessian(model, x, y)
    lam, vecs = np.linalg.eigh(dense.numpy())
    return model, x, y, dense, lam, vecs


def test_top_eigenvalue_matches_the_dense_largest_eigenvalue(tanh_case):
    """The top Ritz value of the shared Lanczos run is λ_max of the dense Hessian (P = 31 ≤ 50
    steps), and the recorded residual bound covers the difference."""
    model, x, y, dense, lam, _ = tanh_case
    value, rec = call("hessian.top_eigenvalue", make_cache(model, x, y, 3))
    assert value == pytest.approx(lam.max(), rel=1e-5)
    assert abs(value - lam.max()) <= rec["uncertainty"] + 1e-5 * lam.max()
    norm_sq = sum(p.detach().double().pow(2).sum().item() for p in model.parameters())
    value2, _ = call("hessian.top_eigenvalue_x_weight_norm", make_cache(model, x, y, 3))
    assert value2 == pytest.approx(value * norm_sq, rel=1e-12)


def test_trace_matches_dense_trace_within_hutchinson_error(tanh_case, monkeypatch):
    """Hutch++ on a Lanczos run too short to span the space (5 steps of P = 31): the Krylov
    part is Σ α_k, and the rest is Hutchinson on A = PHP, P = I − QQᵀ, whose variance per
    Rademacher probe is 2 Σ_{i≠j} A_ij²: checked against the dense trace at 5 standard errors,
    and the recorded standard error against that formula."""
    model, x, y, dense, _, _ = tanh_case
    monkeypatch.setattr(mh, "LANCZOS_STEPS", 5)
    monkeypatch.setattr(mh, "TRACE_PROBES", 40)
    cache = make_cache(model, x, y, 3)
    value, rec = call("hessian.trace", cache)
    ctx = MeasureContext(cache, "any")
    start = rademacher(dense.shape[0], ctx.stream(mh.LANCZOS_SEED_NAME)).double()
    basis = lanczos(lambda v: dense @ v, start, 5, keep_basis=True).basis
    rest = torch.eye(dense.shape[0], dtype=torch.float64) - basis.T @ basis
    deflated = rest @ dense @ rest
    off_diag_sq = (deflated.pow(2).sum() - deflated.diagonal().pow(2).sum()).item()
    stderr = np.sqrt(2 * off_diag_sq / mh.TRACE_PROBES)
    assert abs(value - dense.trace().item()) < 5 * stderr
    assert rec["stderr"] == pytest.approx(stderr, rel=0.5)  # the recorded estimate is sensible
    assert rec["hvps"] == 5 + 40


def test_numerical_rank_is_the_quadrature_of_its_probe(tanh_case):
    """P = 31 ≤ 50 Lanczos steps: full Lanczos, so the quadrature is exact for the probe v:
    value = P · uᵀ 1[H > λ_max/100] u with u = v/‖v‖, and θ_max = λ_max."""
    model, x, y, dense, lam, vecs = tanh_case
    P = len(lam)
    threshold = mh.RANK_RTOL * lam.max()
    assert np.abs(lam - threshold).min() > 1e-3 * lam.max()  # no eigenvalue on the edge
    cache = make_cache(model, x, y, 3)
    value, rec = call("hessian.numerical_rank", cache)
    v = rademacher(P, MeasureContext(cache, mh.LANCZOS_SEED_NAME).generator).double().numpy()
    u = v / np.linalg.norm(v)
    coeffs = vecs.T @ u
    expected = P * float((coeffs**2)[lam > threshold].sum())
    assert value == pytest.approx(expected, rel=1e-4)
    assert rec["top_ritz_value"] == pytest.approx(lam.max(), rel=1e-4)
    assert rec["hvps"] <= P


def test_numerical_rank_estimates_the_eigenvalue_count(tanh_case, monkeypatch):
    """Averaged over many probes, the estimate approaches #{λ_i > λ_max/100}; per probe it is
    vᵀΠv (Π the spectral projector), whose variance is 2 Σ_{i≠j} Π_ij²."""
    model, x, y, _, lam, vecs = tanh_case
    keep = lam > mh.RANK_RTOL * lam.max()
    projector = vecs[:, keep] @ vecs[:, keep].T
    probes = 100
    monkeypatch.setattr(mh, "SLQ_PROBES", probes)
    value, rec = call("hessian.numerical_rank", make_cache(model, x, y, 3))
    stderr = np.sqrt(2 * ((projector**2).sum() - (np.diag(projector) ** 2).sum()) / probes)
    assert abs(value - keep.sum()) < 5 * stderr
    assert rec["probes"] == probes


def test_shared_values_are_computed_once_and_do_not_depend_on_order(tanh_case):
    model, x, y, _, _, _ = tanh_case
    a = make_cache(model, x, y, 3, key="run-a")
    first = {name: call(name, a) for name in NAMES}
    # λ_max, λ_max·‖w‖², the numerical rank and the trace pair share one computation.
    assert a.hits == {mh.CURVATURE_KEY: len(NAMES) - 1}
    assert first["hessian.top_eigenvalue"][1]["hvps"] == first["hessian.top_eigenvalue_x_weight_norm"][1]["hvps"]
    # Same run key, measures in the opposite order, fresh cache: bit-identical values.
    b = make_cache(model, x, y, 3, key="run-a")
    second = {name: call(name, b) for name in reversed(NAMES)}
    assert {k: v[0] for k, v in first.items()} == {k: v[0] for k, v in second.items()}


def test_global_rng_and_model_are_untouched(tanh_case):
    model, x, y, _, _, _ = tanh_case
    cache = make_cache(model, x, y, 3)
    before = {k: v.clone() for k, v in cache.model.state_dict().items()}
    state = torch.random.get_rng_state()
    for name in NAMES:
        ctx = MeasureContext(cache, name)
        _MEASURES[name].fn(ctx)
        assert all(p.grad is None for p in ctx.model.parameters())
        assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in cache.model.state_dict().items())
    assert all(p.grad is None for p in cache.model.parameters())


def test_uses_a_fixed_subsample_of_the_training_set(monkeypatch):
    """With more training examples than SAMPLES, the Hessian is taken on SAMPLES of them: on
    the diagonal model λ_max is then the largest of the chosen examples' H_ii and the trace
    their sum. (The Lanczos run stops at a breakdown before it has found every tiny eigenvalue,
    so Hutch++'s probes estimate the rest: the trace is checked within 3 recorded errors.)"""
    w = [0.0, -1.0, -2.0, -3.0, 1.5, -4.0, 2.5, -5.0, 0.5, -0.5]
    model, n = PerExample(w), len(w)
    x, y = torch.eye(n), torch.zeros(n, dtype=torch.int64)
    monkeypatch.setattr(mh, "SAMPLES", 4)
    cache = make_cache(model, x, y, 2)
    value, rec = call("hessian.trace", cache)
    ctx = MeasureContext(cache, "any")
    chosen, _ = mh.hessian_batch(ctx, mh.shared_generator(ctx))
    idx = chosen.argmax(dim=1)
    assert len(idx) == 4 and rec["samples"] == 4
    s = torch.sigmoid(torch.tensor(w, dtype=torch.float64))[idx]
    diag = s * (1 - s) / 4
    assert abs(value - diag.sum().item()) <= 3 * rec["uncertainty"] + 1e-5 * value
    top, _ = call("hessian.top_eigenvalue", cache)
    assert top == pytest.approx(diag.max().item(), rel=1e-5)
