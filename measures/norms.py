"""Norm-based measures (family ``norm``): parameter norms, distances from initialization and
products/sums of per-layer norms.

References: Jiang, Neyshabur, Mobahi, Krishnan & Bengio, "Fantastic generalization measures
and where to find them" (ICLR 2020) — equation numbers below are theirs, as used by the
``ComplexityType`` enum of nitarshan/robust-generalization-measures; Neyshabur, Bhojanapalli,
McAllester & Srebro, "Exploring generalization in deep learning" (NeurIPS 2017) and its code
bneyshabur/generalization-bounds.

Conventions shared by every measure here:

- "Layers" are the Linear and Conv layers of ``ctx.layers()`` in forward order; a conv kernel
  (out, in, k…) is used as the reshaped matrix (out, in·k…), **not** the exact operator of
  the convolution. Layer biases are not part of the layer matrices; BatchNorm is not folded
  into the preceding layer. For branched models (Inception) a product runs over every
  Linear/Conv module, not along one path.
- Everything is computed in float64.
- No size normalization: nitarshan's code maps every value v to sqrt(v / m) (or
  0.5·(v − log m) for log measures) with m the number of training examples. Natural and
  randomized twins have the same m, and those maps are monotone, so the separation of twins
  is unchanged; we report the raw quantity.

The per-layer function × aggregator pattern of bneyshabur's ``calc_measure`` is factored into
:func:`over_layers`: a *layer function* (``Layer -> scalar tensor``) built from a *matrix
function* with :func:`of_weight` or :func:`of_distance`, combined over layers by one of
:data:`AGGREGATORS`. For example ``over_layers(ctx, of_weight(spectral), "log_product")``
is Σ_l log σ_max(W_l).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from gentest.context import Layer
from gentest.registry import measure

MatrixFn = Callable[[torch.Tensor], torch.Tensor]
LayerFn = Callable[[Layer], torch.Tensor]


# --- matrix functions: (out, in) matrix -> scalar float64 tensor ---------------------------


def frobenius(w: torch.Tensor) -> torch.Tensor:
    """‖W‖_F."""
    return torch.linalg.matrix_norm(w.double(), ord="fro")


def frobenius_sq(w: torch.Tensor) -> torch.Tensor:
    """‖W‖_F²."""
    return w.double().pow(2).sum()


def spectral(w: torch.Tensor) -> torch.Tensor:
    """σ_max(W), the largest singular value of the (reshaped) matrix."""
    return torch.linalg.matrix_norm(w.double(), ord=2)


def spectral_sq(w: torch.Tensor) -> torch.Tensor:
    """σ_max(W)²."""
    return spectral(w).pow(2)


def row_group_norm(w: torch.Tensor, p: float = 2.0, q: float = 1.0) -> torch.Tensor:
    """‖(‖W_{j,:}‖_p)_j‖_q: the q-norm over output units j of the p-norms of the rows of W.

    W is in PyTorch's (out, in) layout, so row j holds the incoming weights of unit j. With
    p = 2, q = 1 this is Bartlett et al.'s ‖Wᵀ‖_{2,1} (the sum over the columns of Wᵀ, i.e.
    the rows of W, of their L2 norms); it is also bneyshabur's group norm L_{p,q}.
    """
    rows = torch.linalg.vector_norm(w.double(), ord=p, dim=1)
    return torch.linalg.vector_norm(rows, ord=q)


# --- layer functions ----------------------------------------------------------------------


def of_weight(fn: MatrixFn) -> LayerFn:
    """The layer function fn(W_l) of the trained weight matrix."""
    return lambda layer: fn(layer.weight)


def of_distance(fn: MatrixFn) -> LayerFn:
    """The layer function fn(W_l − W_l⁰) of the distance from the initial weight matrix."""
    return lambda layer: fn(layer.weight.double() - layer.initial.double())


# --- aggregators over layers --------------------------------------------------------------

AGGREGATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum": lambda v: v.sum(),
    "product": lambda v: v.prod(),
    "log_product": lambda v: v.log().sum(),  # log Π v_l = Σ log v_l; a zero v_l gives −inf
    "max": lambda v: v.max(),
    "l2": lambda v: v.pow(2).sum().sqrt(),
}


def layer_values(ctx, fn: LayerFn) -> torch.Tensor:
    """fn applied to every layer of ``ctx.layers()``, as a float64 vector of length d."""
    layers = ctx.layers()
    if not layers:
        raise ValueError("the model has no Linear or Conv layers, so per-layer norms are undefined")
    return torch.stack([fn(layer).double().reshape(()) for layer in layers])


def over_layers(ctx, fn: LayerFn, how: str) -> float:
    """Aggregate a layer function over the layers: ``how`` is a key of :data:`AGGREGATORS`."""
    if how not in AGGREGATORS:
        raise ValueError(f"unknown aggregator {how!r}; one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[how](layer_values(ctx, fn)).item()


# --- measures -----------------------------------------------------------------------------


@measure("norm.param_l2", family="norm", orientation="higher-worse")
def param_l2(ctx) -> float:
    """L2 norm ‖w‖₂ of the vector of all parameters, biases included.

    Jiang et al. 2020, L2 (nitarshan's ``ComplexityType.L2``, number 100; the catalogue's
    PARAM_NORM (42) is its square restricted to layer weights). Convention: *all* parameters
    of ``ctx.parameters()`` — weights, biases and normalization scales/shifts (buffers such as
    BatchNorm running statistics are not parameters and are left out) — and the root is
    taken: ‖w‖₂, not ‖w‖₂². nitarshan's code uses the weights only (no biases, no BatchNorm).
    """
    return torch.linalg.vector_norm(ctx.parameters().double()).item()


@measure("norm.frobenius_distance_from_init", family="norm", orientation="higher-worse", requires={"init"})
def frobenius_distance_from_init(ctx) -> float:
    """Frobenius distance from initialization, sqrt(Σ_l ‖W_l − W_l⁰‖_F²), over layer weights.

    Jiang et al. 2020, FRO_DIST eq. (40), which is the squared sum Σ_l ‖W_l − W_l⁰‖_F²; we
    report its square root (equal to ‖w − w⁰‖₂ over the layer weights only). Biases and
    normalization parameters are not included; conv kernels enter as reshaped matrices (the
    Frobenius norm does not depend on the reshape).
    """
    return math.sqrt(over_layers(ctx, of_distance(frobenius_sq), "sum"))


@measure("norm.log_prod_frobenius", family="norm", orientation="higher-worse")
def log_prod_frobenius(ctx) -> float:
    """Log of the product of squared Frobenius norms, Σ_l log ‖W_l‖_F².

    Jiang et al. 2020, LOG_PROD_OF_FRO eq. (37): log Π_l ‖W_l‖_F², computed as a sum of logs
    so that deep networks do not overflow. Natural log; squared norms (not ‖W_l‖_F); layer
    weights only, no biases. A zero weight matrix gives −inf.
    """
    return over_layers(ctx, of_weight(frobenius_sq), "log_product")


@measure("norm.log_sum_frobenius", family="norm", orientation="higher-worse")
def log_sum_frobenius(ctx) -> float:
    """Log of Jiang's sum of Frobenius norms, log d + (1/d)·Σ_l log ‖W_l‖_F².

    Jiang et al. 2020, LOG_SUM_OF_FRO eq. (39): log(d · (Π_l ‖W_l‖_F²)^{1/d}), d the number of
    layers. This is d times the geometric mean of the squared norms, i.e. the minimum of
    Σ_l ‖W_l‖_F² over the rescalings W_l → c_l W_l with Π c_l = 1 (AM–GM), and therefore —
    unlike the plain sum Σ_l ‖W_l‖_F — invariant under rescaling consecutive ReLU layers by
    c and 1/c. Natural log, squared norms, layer weights only.
    """
    values = layer_values(ctx, of_weight(frobenius_sq))
    d = len(values)
    return math.log(d) + values.log().sum().item() / d


@measure("norm.log_prod_spectral", family="norm", orientation="higher-worse")
def log_prod_spectral(ctx) -> float:
    """Log of the product of squared spectral norms, Σ_l log σ_max(W_l)².

    Jiang et al. 2020, LOG_PROD_OF_SPEC eq. (32): log Π_l σ_max(W_l)², as a sum of logs.
    σ_max from ``torch.linalg.matrix_norm(W, ord=2)`` of the layer matrix; conv kernels are
    reshaped to (out, in·k…) — not the exact conv operator norm (Jiang's FFT variant, 132).
    Natural log, squared norms, layer weights only.
    """
    return over_layers(ctx, of_weight(spectral_sq), "log_product")
