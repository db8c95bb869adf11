"""Rademacher- and VC-style capacity proxies (family ``rademacher``), all higher-worse.

Zhang et al. 2017's point is that such uniform, data-independent capacities cannot tell a
network trained on true labels from its twin trained on random labels: the parameter count
and the VC bound depend on the architecture alone, so they tie every natural/randomized pair
by construction (that is what they are here for, beside ``control.param_count``). The
norm-based Rademacher bound depends on the trained weights and the margin, so it can
separate twins.

ω = the number of parameters of the model (weights, biases and normalization shifts;
buffers such as BatchNorm running statistics are not parameters); L = the number of
Linear/Conv layers (as bneyshabur's depth ``d``).
"""

from __future__ import annotations

import math

from gentest.registry import measure
from measures.norms import frobenius, layer_values, of_weight, positive_margin


def n_params(ctx) -> int:
    """ω: every parameter of the trained model (weights, biases, normalization shifts; not buffers)."""
    return sum(p.numel() for p in ctx.model.parameters())


@measure("rademacher.param_count", family="rademacher", orientation="higher-worse")
def param_count(ctx) -> float:
    """Number of parameters ω, the VC-dimension proxy of Jiang et al. 2020 (PARAMS, eq. (20)).

    Jiang et al. 2020 eq. (20); nitarshan's ``CT.PARAMS`` counts weights only (after folding
    BatchNorm), bneyshabur/over-parametrization's ``#parameter`` every parameter — as we do:
    weights, biases and normalization shifts of ``ctx.model`` (not buffers). The same value as
    ``control.param_count``; not logged, no √(ω/m) normalization (twins share m). Identical
    for twins, so it ties every pair — which is the point (Zhang et al. 2017).
    """
    return float(n_params(ctx))


@measure("rademacher.vc_dimension_bound", family="rademacher", orientation="higher-worse")
def vc_dimension_bound(ctx) -> float:
    """VC-dimension bound of piecewise-linear networks, ω · L · log ω (constants dropped).

    Harvey, Liaw & Mehrabian, "Nearly-tight VC-dimension bounds for piecewise linear neural
    networks" (COLT 2017): VCdim = O(W·L·log W) for W parameters and L layers (and
    Ω(W·L·log(W/L))). We return W·L·ln W with W = ω (all parameters) and L = the number of
    Linear/Conv layers (unfolded; for branched models such as Inception this counts every
    branch, overcounting the depth). The O-constant is dropped, and so is the generalization
    bound built from it (bneyshabur/over-parametrization's "VC bound": √(VC/m) with log
    factors), which is monotone in VC for fixed m. Natural log; not itself logged.
    Architecture-only: ties every twin pair.
    """
    w = n_params(ctx)
    depth = len(ctx.layers(fold_bn=False))
    if depth == 0:
        raise ValueError("the model has no Linear or Conv layers, so the VC bound's depth is undefined")
    return float(w * depth * math.log(w))


@measure(
    "rademacher.neyshabur2015_frobenius", family="rademacher", orientation="higher-worse", requires={"train_data"}
)
def neyshabur2015_frobenius(ctx) -> float:
    """Log of Neyshabur et al. 2015's Frobenius-norm Rademacher bound, log(2^d · Π_l ‖W_l‖_F / (γ√m)).

    Neyshabur, Tomioka & Srebro, "Norm-based capacity control in neural networks" (COLT 2015):
    the Rademacher complexity of depth-d ReLU nets with per-layer Frobenius (group L_{2,2})
    norms grows as 2^d · Π_l ‖W_l‖_F; with the margin, as summarized by Neyshabur et al. 2017
    ("Exploring generalization", §2: capacity ∝ Π_l 4‖W_l‖_F² / γ²), the bound is
    2^d · Π_l ‖W_l‖_F / (γ √m). Natural log: d·log 2 + Σ_l log ‖W_l‖_F − log γ − ½ log m.
    Dropped: the input norm max‖x‖, constants, the δ term. Layers as in ``measures.norms``
    (reshaped convs, BatchNorm folded, no biases); γ the 10th-percentile training margin, sign
    kept, ValueError when γ ≤ 0. The depth-improved version (Golowich et al. 2018) is
    ``bound.golowich_frobenius``.
    """
    gamma = positive_margin(ctx, "the Neyshabur et al. 2015 Frobenius bound")
    log_fro = layer_values(ctx, of_weight(frobenius)).log()
    d = len(log_fro)
    return d * math.log(2.0) + log_fro.sum().item() - math.log(gamma) - 0.5 * math.log(ctx.n_train)
