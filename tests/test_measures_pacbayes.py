"""PAC-Bayes measures against independent computations on a tiny logistic regression.

The model is one Linear(2, 2) layer (6 parameters) on two Gaussian blobs in the plane. The
σ found by the search is checked with a brute-force numpy Monte-Carlo estimate of the expected
accuracy drop (20,000 draws from numpy's own generator); the bound formulas with a patched σ
by plain Python arithmetic over the six parameters; the noise standard deviations from the
empirical spread of many draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import measures.pacbayes as pacbayes
import measures.perturbation as perturbation
from gentest.context import MeasureContext, RunCache
from gentest.datasets import DataSplit
from gentest.errors import NotApplicable
from gentest.registry import _MEASURES

from tiny_logistic import B, B0, W, W0, blobs, call, context, linear, scaled  # noqa: F401
NAMES = ["pacbayes.flatness", "pacbayes.init", "pacbayes.orig", "pacbayes.mag_flatness", "pacbayes.mag_init", "pacbayes.mag_orig"]


def brute_force_drop(scale: float, sigma: float, draws: int = 20000) -> tuple[float, float]:
    """|E acc(w + u) − acc(w)| with u ~ N(0, σ²I) on all 6 parameters, by a numpy loop; and the
    standard deviation of one draw's accuracy."""
    rng = np.random.default_rng(12345)
    w, b = (np.array(a, dtype=np.float64) for a in scaled(scale))
    x, y = (t.numpy() for t in blobs())
    x = x.astype(np.float64)
    acc0 = ((x @ w.T + b).argmax(axis=1) == y).mean()
    accs = np.empty(draws)
    for k in range(draws):
        wu = w + sigma * rng.standard_normal(w.shape)
        bu = b + sigma * rng.standard_normal(b.shape)
        accs[k] = ((x @ wu.T + bu).argmax(axis=1) == y).mean()
    return abs(accs.mean() - acc0), accs.std()


def test_registered_with_metadata():
    for name in NAMES:
        m = _MEASURES[name]
        needs_init = name.endswith(("init", "mag_orig"))
        assert (m.family, m.orientation) == ("pacbayes", "higher-worse")
        assert set(m.requires) == ({"init", "train_data"} if needs_init else {"train_data"})
        assert m.description and "Jiang" in m.fn.__doc__


def test_sigma_moves_accuracy_by_0_1_by_brute_force_monte_carlo(monkeypatch):
    # Many draws per midpoint, so the search's own Monte-Carlo error is small.
    monkeypatch.setattr(pacbayes, "MC_DRAWS", 400)
    ctx = context()
    sigma = call("pacbayes.flatness", ctx) ** -0.5
    assert sigma == pytest.approx(ctx.recorded["sigma"])
    assert ctx.recorded["mc_draws"] == 400 and ctx.recorded["bisection_steps"] <= pacbayes.SEARCH_STEPS
    # Stopped at the stated precision (or at the last midpoint); the uncertainty is the bracket's.
    upper = ctx.recorded["sigma_upper"]
    assert upper - sigma <= pacbayes.SIGMA_RTOL * sigma or ctx.recorded["bisection_steps"] == pacbayes.SEARCH_STEPS
    assert ctx.recorded["uncertainty"] == pytest.approx(sigma**-2 - upper**-2)
    drop, _ = brute_force_drop(1.0, sigma)
    assert drop == pytest.approx(0.1, abs=0.025)


def test_sigma_with_the_default_draws_is_within_monte_carlo_tolerance():
    ctx = context()
    sigma = call("pacbayes.flatness", ctx) ** -0.5
    assert ctx.recorded["mc_draws"] == pacbayes.MC_DRAWS == 10
    drop, per_draw_std = brute_force_drop(1.0, sigma)
    # The search compares 10-draw means with 0.1: three standard errors of such a mean.
    assert abs(drop - 0.1) < 3 * per_draw_std / math.sqrt(pacbayes.MC_DRAWS) + 0.01


def test_a_twice_as_sharp_model_gets_half_the_sigma(monkeypatch):
    # Halving every parameter keeps the function (argmax of halved logits) but makes
    # noise of std σ act like noise of std 2σ on the original: σ must halve.
    sigma = call("pacbayes.flatness", context(1.0)) ** -0.5
    sharp = call("pacbayes.flatness", context(0.5)) ** -0.5
    assert sharp < sigma
    monkeypatch.setattr(pacbayes, "MC_DRAWS", 400)
    sigma = call("pacbayes.flatness", context(1.0)) ** -0.5
    sharp = call("pacbayes.flatness", context(0.5)) ** -0.5
    assert sharp / sigma == pytest.approx(0.5, abs=0.1)
    # Magnitude-aware noise scales with the weights (ε = 1e-3 ≪ |w|): σ′ barely moves.
    mag = call("pacbayes.mag_flatness", context(1.0)) ** -0.5
    mag_sharp = call("pacbayes.mag_flatness", context(0.5)) ** -0.5
    assert mag_sharp / mag == pytest.approx(1.0, abs=0.15)


def patched(sigma: float, mag_sigma: float) -> MeasureContext:
    ctx = context()
    tensors = ctx._cache._tensors
    tensors["pacbayes/sigma"] = perturbation.SearchResult(sigma, 15, 0.1).tensor()
    tensors["pacbayes/mag_sigma"] = perturbation.SearchResult(mag_sigma, 15, 0.1).tensor()
    return ctx


def test_formulas_by_hand_from_a_patched_sigma():
    sigma, mag_sigma, eps, m = 0.05, 0.3, 1e-3, 400
    w = [v for row in W for v in row] + B  # parameter order: weight (row-major), bias
    w0 = [v for row in W0 for v in row] + B0
    dist_sq = sum((a - b) ** 2 for a, b in zip(w, w0))
    norm_sq = sum(a * a for a in w)
    expected_init = dist_sq / (4 * sigma**2) + math.log(m / sigma) + 10
    expected_orig = norm_sq / (4 * sigma**2) + math.log(m / sigma) + 10

    def mag(r_sq: float) -> float:
        total = 0.0
        for a, b in zip(w, w0):
            total += math.log((eps**2 + (mag_sigma**2 + 1) * r_sq / 6) / (eps**2 + mag_sigma**2 * (a - b) ** 2))
        return total / 4 + math.log(m / mag_sigma) + 10

    assert call("pacbayes.flatness", patched(sigma, mag_sigma)) == pytest.approx(400.0, rel=1e-12)
    assert call("pacbayes.init", patched(sigma, mag_sigma)) == pytest.approx(expected_init, rel=1e-6)
    assert call("pacbayes.orig", patched(sigma, mag_sigma)) == pytest.approx(expected_orig, rel=1e-6)
    assert call("pacbayes.mag_flatness", patched(sigma, mag_sigma)) == pytest.approx(1 / 0.09, rel=1e-12)
    assert call("pacbayes.mag_init", patched(sigma, mag_sigma)) == pytest.approx(mag(dist_sq), rel=1e-6)
    assert call("pacbayes.mag_orig", patched(sigma, mag_sigma)) == pytest.approx(mag(norm_sq), rel=1e-6)


def test_noise_standard_deviations():
    gen = torch.Generator().manual_seed(0)
    levels = torch.tensor([0.0, 1e-3, 0.05, 0.5, 2.0])
    w = levels.repeat_interleave(40000).reshape(5, 40000)
    sigma, eps = 0.3, 1e-3
    (u,) = perturbation.gaussian_noise([w], sigma, gen, magnitude_eps=eps)
    assert u.shape == (1, 5, 40000)
    for level, row in zip(levels.tolist(), u[0]):
        expected = math.sqrt(sigma**2 * level**2 + eps**2)  # the std, not σ²w² + ε²
        assert row.std().item() == pytest.approx(expected, rel=0.02)
        assert abs(row.mean().item()) < 4 * expected / math.sqrt(40000)
    (plain,) = perturbation.gaussian_noise([w], sigma, gen, draws=3)
    assert plain.shape == (3, 5, 40000)
    assert plain.std().item() == pytest.approx(sigma, rel=0.01)  # σ, not σ² = 0.09


def test_deterministic_and_independent_of_which_measure_asks_first():
    x, y = blobs()

    def fresh() -> RunCache:
        return RunCache(linear(W, B), linear(W0, B0), DataSplit("tiny", x, y, x, y, 2), "cpu")

    first, second = fresh(), fresh()
    a = [call(name, context(cache=first, name=name)) for name in NAMES]
    b = [call(name, context(cache=second, name=name)) for name in reversed(NAMES)][::-1]
    assert a == b  # bit for bit, whichever measure ran the shared search
    assert first.hits["pacbayes/sigma"] == 2 and first.hits["pacbayes/mag_sigma"] == 2  # searched once each


def test_never_modifies_the_model():
    ctx = context()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    shared = {k: v.clone() for k, v in ctx._cache.model.state_dict().items()}
    for name in NAMES:
        call(name, ctx)
    for k, v in ctx.model.state_dict().items():
        assert torch.equal(v, before[k])
    for k, v in ctx._cache.model.state_dict().items():
        assert torch.equal(v, shared[k])


def test_batchnorm_is_folded_before_perturbing():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[1].running_mean.copy_(torch.tensor([0.5, -0.3, 0.1, 0.0]))
        model[1].running_var.copy_(torch.tensor([2.0, 0.5, 1.5, 1.0]))
        model[1].weight.copy_(torch.tensor([1.5, 0.7, -1.0, 2.0]))
    x, y = blobs()
    ctx = MeasureContext(RunCache(model, model, DataSplit("tiny", x, y, x, y, 2), "cpu"), "test")
    pert = perturbation.perturbable(ctx)
    assert pert.omega == 2 * 4 + 4 + 4 * 2 + 2  # BatchNorm gone, its parameters folded in
    assert torch.allclose(pert.logits(pert.params, x), model(x), atol=1e-5)
    assert call("pacbayes.flatness", ctx) > 0

    unfoldable = nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 2)).eval()
    ctx = MeasureContext(RunCache(unfoldable, unfoldable, DataSplit("tiny", x, y, x, y, 2), "cpu"), "test")
    with pytest.raises(NotApplicable):
        call("pacbayes.flatness", ctx)


def test_no_sigma_meeting_the_target_is_an_error(monkeypatch):
    monkeypatch.setattr(pacbayes, "TARGET", -1.0)  # every noise level "moves accuracy too much"
    with pytest.raises(ValueError, match="σ is 0"):
        call("pacbayes.flatness", context())
