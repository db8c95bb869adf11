"""Today's heavy estimators, kept verbatim as references for the faster ones (issue 17).

Copied from the library before issue 17 changed them (measures/hessian.py, measures/pacbayes.py,
measures/sharpness.py, measures/perturbation.py): the Hutchinson trace through PyHessian with
50 probes, the full-depth bisections of the PAC-Bayes σ (15 midpoints) and of the sharpness α′
(12 midpoints, 5 ascent steps each), and Keskar's ε-sharpness. The stability retrain's
reference is ``gentest.training.train`` itself with its default per-epoch evaluation, which
issue 17 left as it was (the retrain opts out of it).

Each function takes a MeasureContext and returns what the measure returned then (and its
recorded uncertainty where it had one); nothing is cached, so every call pays the full cost
(what the benchmarks time). ``tests/test_estimator_references.py`` compares them with the
library on the ``ci`` runs and ``tests/benchmarks/test_bench_estimators.py`` times both.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from gentest.curvature import subsample
from measures.perturbation import (
    Perturbable,
    SearchResult,
    gaussian_noise,
    perturbable,
    train_subsample,
)

# --- hessian.trace: Hutchinson, 50 Rademacher probes, PyHessian --------------------------------

HESSIAN_SAMPLES = 1000
TRACE_PROBES = 50


def trace(ctx) -> tuple[float, float, int]:
    """(tr H, its standard error, HVPs) as ``hessian.trace`` computed them before issue 17."""
    from pyhessian import hessian as PyHessian

    gen = ctx.stream("hessian")
    x, y = subsample(ctx.x_train, ctx.y_train, HESSIAN_SAMPLES, gen)
    seed = int(torch.randint(2**31, (1,), generator=gen))
    model = copy.deepcopy(ctx.model).to("cpu").eval()
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*create_graph=True.*reference cycle.*")
            torch.random.manual_seed(seed)
            h = PyHessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
            samples = torch.tensor(h.trace(maxIter=TRACE_PROBES, tol=float("-inf")), dtype=torch.float64)
    finally:
        for p in model.parameters():
            p.grad = None
    stderr = samples.std().item() / math.sqrt(len(samples))
    return samples.mean().item(), stderr, TRACE_PROBES


# --- shared search machinery (measures/perturbation.py before issue 17) --------------------------


def bisect(
    displacement: Callable[[float], float], lower: float, upper: float, steps: int, target: float, geometric: bool = False
) -> SearchResult:
    """Full-depth bisection for the largest value whose displacement is at most ``target``."""
    met: float | None = None
    over = float("nan")
    k = 0
    for k in range(1, steps + 1):
        value = math.sqrt(lower * upper) if geometric else (lower + upper) / 2
        d = displacement(value)
        if d > target:
            upper, over = value, d
        else:
            lower, met = value, d
    return SearchResult(lower, k, met if met is not None else over)


def ascend(pert: Perturbable, x, y, radius, steps: int, start=None) -> tuple[float, float, float, float]:
    """Projected sign-gradient ascent; (loss at w, accuracy at w, max loss, max accuracy change)."""
    zeta = [torch.zeros_like(p) for p in pert.params]
    loss0, acc0, grads = start if start is not None else pert.loss_and_grad(pert.params, x, y)
    best_loss, worst_change = loss0, 0.0
    for t in range(1, steps + 1):
        eta = 1.0 if t == 1 else 0.5
        with torch.no_grad():
            zeta = [torch.clamp(z + eta * r * g.sign(), -r, r) for z, r, g in zip(zeta, radius, grads)]
            values = [p + z for p, z in zip(pert.params, zeta)]
        if t < steps:
            loss, acc, grads = pert.loss_and_grad(values, x, y)
        else:
            with torch.no_grad():
                logits = pert.logits(values, x)
                loss = F.cross_entropy(logits, y).item()
                acc = (logits.argmax(dim=1) == y).double().mean().item()
        best_loss = max(best_loss, loss)
        worst_change = max(worst_change, abs(acc - acc0))
    return loss0, acc0, best_loss, worst_change


# --- pacbayes σ and σ′: bisection on [0, 2], 15 midpoints, 10 draws each ---------------------------

SIGMA_UPPER, SIGMA_STEPS, MC_DRAWS, SIGMA_TARGET, PACBAYES_MAG_EPS = 2.0, 15, 10, 0.1, 1e-3


def sigma_search(ctx, magnitude_eps: float | None = None) -> SearchResult:
    """σ (plain) or σ′ (``magnitude_eps`` given) as ``pacbayes.flatness``/``mag_flatness`` found them."""
    key = "pacbayes/sigma" if magnitude_eps is None else "pacbayes/mag_sigma"
    generator = ctx.stream(key)
    pert = perturbable(ctx)
    x, y = train_subsample(ctx, generator)
    acc0 = pert.accuracy(pert.params, x, y)

    def displacement(sigma: float) -> float:
        noise = gaussian_noise(pert.params, sigma, generator, magnitude_eps, draws=MC_DRAWS)
        accs = pert.accuracies([p + u for p, u in zip(pert.params, noise)], x, y)
        return abs(accs.mean().item() - acc0)

    return bisect(displacement, 0.0, SIGMA_UPPER, SIGMA_STEPS, SIGMA_TARGET)


# --- sharpness α′ and Keskar's ε ------------------------------------------------------------------

ALPHA_LOWER, ALPHA_UPPER, ALPHA_STEPS, ASCENT_STEPS, ALPHA_TARGET, SHARPNESS_MAG_EPS = 1e-6, 2.0, 12, 5, 0.1, 1e-3
KESKAR_EPS, KESKAR_STEPS = 5e-4, 10


def alpha_search(ctx, magnitude: bool = False) -> SearchResult:
    """α′ as ``sharpness.worst_case_flatness`` (plain) / ``sharpness.mag_flatness`` found it."""
    key = "sharpness/mag_alpha" if magnitude else "sharpness/alpha"
    pert = perturbable(ctx)
    x, y = train_subsample(ctx, ctx.stream(key))
    magnitudes = [p.abs() for p in pert.params]
    start = pert.loss_and_grad(pert.params, x, y)

    def displacement(alpha: float) -> float:
        radius = [alpha * (a + SHARPNESS_MAG_EPS) for a in magnitudes] if magnitude else [alpha] * len(magnitudes)
        return ascend(pert, x, y, radius, ASCENT_STEPS, start)[3]

    return bisect(displacement, ALPHA_LOWER, ALPHA_UPPER, ALPHA_STEPS, ALPHA_TARGET, geometric=True)


def keskar_epsilon(ctx) -> float:
    """``sharpness.keskar_epsilon`` before issue 17 (drawn from ``ctx.generator``)."""
    pert = perturbable(ctx)
    x, y = train_subsample(ctx, ctx.generator)
    radius = [KESKAR_EPS * (p.abs() + 1) for p in pert.params]
    loss0, _, best, _ = ascend(pert, x, y, radius, KESKAR_STEPS)
    return 100.0 * (best - loss0) / (1.0 + loss0)


# --- hessian.top_eigenvalue and hessian.numerical_rank: the shared 50-step Lanczos run ----------
# (unchanged by issue 17; here so that the test can check the shared computation kept them)

LANCZOS_STEPS, RANK_RTOL = 50, 1e-2


def lanczos_values(ctx) -> tuple[float, float]:
    """(λ_max, numerical rank) from the Lanczos run alone, as before issue 17."""
    from gentest.curvature import LossHessian, gauss_quadrature, lanczos, rademacher

    x, y = subsample(ctx.x_train, ctx.y_train, HESSIAN_SAMPLES, ctx.stream("hessian"))
    model = copy.deepcopy(ctx.model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    H = LossHessian(model, nn.CrossEntropyLoss(), x, y)
    t = lanczos(H.matvec, rademacher(H.dim, ctx.stream("hessian/lanczos"), H.dtype, H.device), LANCZOS_STEPS)
    nodes, weights = gauss_quadrature(t)
    top = nodes[-1].item()
    return top, H.dim * weights[nodes > RANK_RTOL * top].sum().item()
