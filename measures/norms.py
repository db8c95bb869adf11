"""Norm-based measures (family ``norm``): parameter norms, distances from initialization,
products/sums of per-layer norms, group norms and path norms — and their margin-normalized
variants (family ``margin``, since they divide by the output margin γ).

References: Jiang, Neyshabur, Mobahi, Krishnan & Bengio, "Fantastic generalization measures
and where to find them" (ICLR 2020) — equation numbers below are theirs, as used by the
``ComplexityType`` enum of nitarshan/robust-generalization-measures; Neyshabur, Bhojanapalli,
McAllester & Srebro, "Exploring generalization in deep learning" (NeurIPS 2017) and its code
bneyshabur/generalization-bounds; Neyshabur, Tomioka & Srebro, "Norm-based capacity control
in neural networks" (COLT 2015) for the group norms and path norms.

Conventions shared by every measure here:

- "Layers" are the Linear and Conv layers of ``ctx.layers()`` in forward order; a conv kernel
  (out, in, k…) is used as the reshaped matrix (out, in·k…), **not** the exact operator of
  the convolution. Layer biases are not part of the layer matrices. BatchNorm **is folded**
  into the Linear/Conv it follows (``ctx.layers()`` default, ``fold_bn=True``; trained and
  initial model alike, each with its own running statistics), as bneyshabur's ``reparam``
  and nitarshan's ``_reparam`` do; a model whose BatchNorm cannot be folded (pre-activation)
  makes every layer-based measure here "n/a" (``NotApplicable``). Models without BatchNorm
  are unaffected. For branched models (Inception) a product runs over every Linear/Conv
  module, not along one path.
- Margin-normalized variants use γ = the 10th percentile of the training output margins,
  sign kept (``ctx.margin("train", 0.1)``, as ``margin.output_margin``), and raise
  ValueError when γ ≤ 0 (log γ and 1/γ² are undefined or meaningless there).
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

import copy
import math
from typing import Callable

import torch
from torch import nn

from gentest.context import Layer, concatenates_children
from gentest.errors import NotApplicable
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


def stable_rank(w: torch.Tensor) -> torch.Tensor:
    """‖W‖_F² / σ_max(W)², the stable rank of W."""
    return frobenius_sq(w) / spectral_sq(w)


def group_norm(p: float, q: float) -> MatrixFn:
    """The matrix function W ↦ ‖W‖_{p,q} of Neyshabur et al. 2015 (see :func:`row_group_norm`)."""
    return lambda w: row_group_norm(w, p, q)


MARGIN_QUANTILE = 0.1  # as measures.margins.QUANTILE (not imported: margins imports this module)


def positive_margin(ctx, what: str) -> float:
    """γ, the 10th-percentile training margin (sign kept); ValueError naming ``what`` when γ ≤ 0."""
    gamma = ctx.margin("train", MARGIN_QUANTILE)
    if not gamma > 0:
        raise ValueError(
            f"{what} is undefined: the 10th-percentile training margin is {gamma:.4g} <= 0 "
            "(more than 10% of the training points are misclassified or on the decision boundary)"
        )
    return gamma


def log_sum_of(values: torch.Tensor) -> float:
    """Jiang's "sum" aggregate in the log domain: log d + (1/d)·Σ_l log v_l (d × geometric mean)."""
    d = len(values)
    return math.log(d) + values.log().sum().item() / d


# --- more norm measures ----------------------------------------------------------------------


@measure("norm.dist_spec_init", family="norm", orientation="higher-worse", requires={"init"})
def dist_spec_init(ctx) -> float:
    """Sum of squared spectral distances from initialization, Σ_l σ_max(W_l − W_l⁰)².

    Jiang et al. 2020, DIST_SPEC_INIT eq. (41). Squared spectral norms of the (reshaped,
    BatchNorm-folded) layer-matrix differences, summed; not logged, no root. Layer weights
    only, no biases. Cost: one SVD-based matrix 2-norm per layer.
    """
    return over_layers(ctx, of_distance(spectral_sq), "sum")


@measure("norm.log_sum_spectral", family="norm", orientation="higher-worse")
def log_sum_spectral(ctx) -> float:
    """Log of Jiang's sum of spectral norms, log d + (1/d)·Σ_l log σ_max(W_l)².

    Jiang et al. 2020, LOG_SUM_OF_SPEC eq. (35): log(d · (Π_l σ_max(W_l)²)^{1/d}), d the number
    of layers — d times the geometric mean of the squared spectral norms, invariant under the
    ReLU rescaling W_l → cW_l, W_{l+1} → W_{l+1}/c (as ``norm.log_sum_frobenius``). Natural log,
    squared norms, layer weights only.
    """
    return log_sum_of(layer_values(ctx, of_weight(spectral_sq)))


@measure("norm.fro_over_spec", family="norm", orientation="higher-worse")
def fro_over_spec(ctx) -> float:
    """Sum of stable ranks, Σ_l ‖W_l‖_F² / σ_max(W_l)².

    Jiang et al. 2020, FRO_OVER_SPEC eq. (33). Each term is the stable rank of the (reshaped,
    BatchNorm-folded) layer matrix, between 1 and its rank; invariant to rescaling any layer.
    Not logged. A zero weight matrix gives nan (0/0), reported as an error.
    """
    return over_layers(ctx, of_weight(stable_rank), "sum")


@measure("norm.log_prod_group_1_inf", family="norm", orientation="higher-worse")
def log_prod_group_1_inf(ctx) -> float:
    """Log of the product of per-layer L_{1,∞} group norms, Σ_l log max_j ‖W_l[j, :]‖₁.

    Neyshabur, Tomioka & Srebro 2015 (group norm μ_{p,q} with p = 1, q = ∞; the per-unit L1
    norm behind Bartlett & Mendelson 2002's bound); bneyshabur's "L_{1,inf} norm" (there
    divided by the margin). Group norm of a layer: for each hidden unit j (row j of the
    (out, in) matrix: its incoming weights; for a conv, the output channel's whole kernel),
    the 1-norm of its incoming weights, then the ∞-norm (max) over units. Product over layers
    in the log domain, natural log, not squared, layer weights only (no biases), BatchNorm
    folded. Not in Jiang et al. 2020.
    """
    return over_layers(ctx, of_weight(group_norm(1.0, math.inf)), "log_product")


@measure("norm.log_prod_group_2_2", family="norm", orientation="higher-worse")
def log_prod_group_2_2(ctx) -> float:
    """Log of the product of per-layer L_{2,2} group norms (= Frobenius norms), Σ_l log ‖W_l‖_F.

    Neyshabur, Tomioka & Srebro 2015 (μ_{2,2}: 2-norm of each unit's incoming weights, 2-norm
    over units, i.e. the Frobenius norm); bneyshabur's "Frobenious norm". Not squared, so this
    is exactly half of Jiang et al. 2020's LOG_PROD_OF_FRO eq. (37) (``norm.log_prod_frobenius``);
    kept for the complete (1,∞), (2,2), (3,1.5) family. Natural log, layer weights only.
    """
    return over_layers(ctx, of_weight(group_norm(2.0, 2.0)), "log_product")


@measure("norm.log_prod_group_3_1_5", family="norm", orientation="higher-worse")
def log_prod_group_3_1_5(ctx) -> float:
    """Log of the product of per-layer L_{3,1.5} group norms, Σ_l log ‖(‖W_l[j, :]‖₃)_j‖_{1.5}.

    Neyshabur, Tomioka & Srebro 2015 (μ_{p,q} with p = 3, q = 1.5, their example of a group
    norm whose capacity does not grow with width); bneyshabur's "L_{3,1.5} norm". For each
    unit j (row j: incoming weights) the 3-norm, then the 1.5-norm over units. Product over
    layers in the log domain, natural log, not squared, layer weights only, BatchNorm folded.
    """
    return over_layers(ctx, of_weight(group_norm(3.0, 1.5)), "log_product")


# --- path norms ------------------------------------------------------------------------------

# Leaves the path network may contain, and what each does there (weights |w|^p ≥ 0, no biases,
# input 𝟙, so every activation is ≥ 0).
_PATH_PASSTHROUGH = (nn.ReLU, nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_PATH_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_PATH_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_PATH_ADAPTIVE_AVGPOOL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_path_container(module: nn.Module) -> bool:
    """nn.Sequential, or a container that concatenates its children's outputs (its paths add up)."""
    return isinstance(module, nn.Sequential) or concatenates_children(module)


class _PathAvgPool(nn.Module):
    """An average pool in the |W|^p network: each of its n_w edges into an output carries weight
    1/n_w, so its path-norm weight is (1/n_w)^p, i.e. the average times n_w^{1−p}."""

    def __init__(self, pool: nn.Module, p: float):
        super().__init__()
        self.pool, self.p = pool, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x)
        pool = self.pool
        if isinstance(pool, _PATH_AVGPOOL):
            n = getattr(pool, "divisor_override", None) or math.prod(_as_tuple(pool.kernel_size, y.dim() - 2))
            return y * float(n) ** (1.0 - self.p)
        # Adaptive: along each axis, output i averages input[floor(i·L/O) : ceil((i+1)·L/O)].
        counts = torch.ones((), dtype=y.dtype, device=y.device)
        spatial = y.dim() - 2
        for axis in range(spatial):
            size_in, size_out = x.shape[2 + axis], y.shape[2 + axis]
            i = torch.arange(size_out, device=y.device)
            n = torch.div((i + 1) * size_in + size_out - 1, size_out, rounding_mode="floor") - torch.div(
                i * size_in, size_out, rounding_mode="floor"
            )
            shape = [1] * spatial
            shape[axis] = size_out
            counts = counts * n.to(y.dtype).reshape(shape)
        return y * counts.pow(1.0 - self.p)


def _as_tuple(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def path_network(model: nn.Module, p: float) -> nn.Module:
    """A float64 copy of ``model`` with every Linear/Conv weight replaced by |w|^p, biases set to
    zero, and average pools re-weighted (see :func:`path_norm`). NotApplicable for modules the
    path norm is not defined for here."""
    net = copy.deepcopy(model).double().eval()
    replace = []
    for name, module in net.named_modules():
        where = f"'{name}'" if name else "the model"
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise NotApplicable(f"path norm needs BatchNorm folded first; {type(module).__name__} at {where}")
        if isinstance(module, _WEIGHT_LAYERS):
            with torch.no_grad():
                module.weight.copy_(module.weight.abs().pow(p))
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, _PATH_AVGPOOL):
            if module.ceil_mode or (not module.count_include_pad and any(_as_tuple(module.padding, 3))):
                raise NotApplicable(
                    f"path norm: {type(module).__name__} at {where} has windows of varying size "
                    "(ceil_mode or count_include_pad=False with padding)"
                )
            replace.append(name)
        elif isinstance(module, _PATH_ADAPTIVE_AVGPOOL):
            replace.append(name)
        elif isinstance(module, _PATH_PASSTHROUGH + _PATH_MAXPOOL):
            pass
        elif _is_path_container(module):
            if any(True for _ in module.parameters(recurse=False)):
                raise NotApplicable(f"path norm: {type(module).__name__} at {where} holds parameters of its own")
        else:
            raise NotApplicable(
                f"path norm is not defined here for {type(module).__name__} at {where} (supported: Linear, Conv, "
                "ReLU, max/average pooling, Flatten, Dropout, Identity, folded BatchNorm; nn.Sequential and the "
                "containers that declare concatenates_children, e.g. the Inception blocks)"
            )
    for name in replace:
        if not name:  # the model itself is a pool
            return _PathAvgPool(net, p)
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name)  # "" is the model itself
        setattr(parent, child, _PathAvgPool(getattr(parent, child), p))
    return net


def path_norm(model: nn.Module, input_shape, p: float) -> float:
    """The ℓ_p path norm (Σ_paths Π_{e∈path} |w_e|^p)^{1/p} of a ReLU network without BatchNorm.

    Computed as f_{|W|^p}(𝟙)^{1/p}: the network with every weight replaced by |w|^p and every
    bias dropped (set to 0), run in float64 on one all-ones input of ``input_shape``, its
    outputs summed (Neyshabur et al. 2015; bneyshabur's ``lp_path_norm``). With non-negative
    weights and inputs every ReLU passes its input, so each input→output path contributes
    Π|w_e|^p once. Conventions for the other layers:

    - biases are **dropped**: only paths from an input to an output count (bneyshabur and
      nitarshan raise biases to the p-th power too, i.e. add paths from a constant unit);
    - a conv is its unrolled operator (each kernel weight is the weight of every edge it is
      shared by, so it enters once per spatial position); zero padding adds no paths;
    - average pooling is a layer of fixed edges of weight 1/n (n the window size): each
      contributes (1/n)^p, i.e. the average times n^{1−p} (for p = 1 nothing changes; the
      bneyshabur code leaves the pool as is, which is this only for p = 1);
    - max pooling is kept as max: f_{|W|^p}(𝟙) is then the largest path norm over the
      choices of one input per pooling window (all values are ≥ 0 and the network is
      monotone, so picking each window's largest input maximizes every output at once);
    - branches (Inception/Downsample blocks) are concatenated: their paths add up;
    - Flatten, Dropout (eval), Identity pass through. Anything else (LocalResponseNorm,
      BatchNorm, other activations or custom modules) raises NotApplicable.

    Raises ValueError if the result overflows float64.
    """
    return path_sum(model, input_shape, p) ** (1.0 / p)


def path_sum(model: nn.Module, input_shape, p: float) -> float:
    """Σ_paths Π_{e∈path} |w_e|^p = f_{|W|^p}(𝟙), the p-th power of :func:`path_norm` (same conventions)."""
    net = path_network(model, p)
    device = next((t.device for t in net.parameters()), torch.device("cpu"))  # the model's (CPU or GPU)
    with torch.no_grad():
        total = net(torch.ones((1, *tuple(input_shape)), dtype=torch.float64, device=device)).sum().item()
    if not math.isfinite(total):
        raise ValueError(f"the l{p:g} path norm overflows float64 ({total})")
    return total


@measure("norm.path_norm_1", family="norm", orientation="higher-worse")
def path_norm_1(ctx) -> float:
    """ℓ1 path norm Σ_paths Π_{e∈path} |w_e| of the BatchNorm-folded network, biases dropped.

    Neyshabur, Tomioka & Srebro 2015 (path-regularizer φ_1); bneyshabur's "L1_path norm"
    (there divided by the margin). Computed as the sum of the outputs of the network with
    weights |w| and no biases on one all-ones input, in float64 — see :func:`path_norm` for
    the conventions (biases dropped; convs unrolled; average pools as edges of weight 1/n; max
    pools kept as max; NotApplicable for other layers, e.g. AlexNet's LocalResponseNorm).
    Invariant under rescaling a ReLU unit's incoming weights by c > 0 and outgoing by 1/c.
    Cost: one forward pass on one input.
    """
    return path_norm(ctx.folded_model(), ctx.input_shape, 1.0)


@measure("norm.path_norm_2", family="norm", orientation="higher-worse")
def path_norm_2(ctx) -> float:
    """ℓ2 path norm (Σ_paths Π_{e∈path} w_e²)^{1/2} of the BatchNorm-folded network, biases dropped.

    Neyshabur, Tomioka & Srebro 2015 (φ_2); bneyshabur's "L2_path norm" (there ÷ margin).
    Jiang et al. 2020's PATH_NORM eq. (44) is the same sum *without* the square root
    (Σ_paths Π w_e²); we report the root, as bneyshabur does (a monotone map: same ranking).
    Computed as sqrt of the summed outputs of the network with weights w² and no biases on one
    all-ones input, in float64; conventions in :func:`path_norm` (biases dropped, unlike
    nitarshan's and bneyshabur's code, which square the biases too). Cost: one forward pass.
    """
    return path_norm(ctx.folded_model(), ctx.input_shape, 2.0)


# --- margin-normalized norms (family "margin") -----------------------------------------------


@measure(
    "margin.log_prod_spectral_over_margin", family="margin", orientation="higher-worse", requires={"train_data"}
)
def log_prod_spectral_over_margin(ctx) -> float:
    """Log of the product of squared spectral norms over the squared margin, Σ_l log σ_max(W_l)² − 2 log γ.

    Jiang et al. 2020, LOG_PROD_OF_SPEC_OVER_MARGIN eq. (31): log(Π_l σ_max(W_l)² / γ²), γ the
    10th-percentile training output margin (sign kept; ValueError when γ ≤ 0 — nitarshan takes
    |γ|, which turns a badly fitting network into one with a margin). Layers as in
    ``norm.log_prod_spectral`` (reshaped convs, BatchNorm folded); natural log.
    """
    gamma = positive_margin(ctx, "the spectral norm product over the margin")
    return over_layers(ctx, of_weight(spectral_sq), "log_product") - 2.0 * math.log(gamma)


@measure(
    "margin.log_prod_frobenius_over_margin", family="margin", orientation="higher-worse", requires={"train_data"}
)
def log_prod_frobenius_over_margin(ctx) -> float:
    """Log of the product of squared Frobenius norms over the squared margin, Σ_l log ‖W_l‖_F² − 2 log γ.

    Jiang et al. 2020, LOG_PROD_OF_FRO_OVER_MARGIN eq. (36); γ the 10th-percentile training
    margin, sign kept, ValueError when γ ≤ 0. Layers as in ``norm.log_prod_frobenius``.
    """
    gamma = positive_margin(ctx, "the Frobenius norm product over the margin")
    return over_layers(ctx, of_weight(frobenius_sq), "log_product") - 2.0 * math.log(gamma)


@measure(
    "margin.log_sum_spectral_over_margin", family="margin", orientation="higher-worse", requires={"train_data"}
)
def log_sum_spectral_over_margin(ctx) -> float:
    """Log of Jiang's margin-normalized sum of spectral norms, log d + (1/d)·(Σ_l log σ_max(W_l)² − 2 log γ).

    Jiang et al. 2020, LOG_SUM_OF_SPEC_OVER_MARGIN eq. (34), as nitarshan computes it:
    log(d · (Π_l σ_max(W_l)² / γ²)^{1/d}) — the margin is spread over the d layers before the
    geometric mean. γ the 10th-percentile training margin, sign kept, ValueError when γ ≤ 0.
    """
    gamma = positive_margin(ctx, "the spectral norm sum over the margin")
    values = layer_values(ctx, of_weight(spectral_sq))
    d = len(values)
    return math.log(d) + (values.log().sum().item() - 2.0 * math.log(gamma)) / d


@measure(
    "margin.log_sum_frobenius_over_margin", family="margin", orientation="higher-worse", requires={"train_data"}
)
def log_sum_frobenius_over_margin(ctx) -> float:
    """Log of Jiang's margin-normalized sum of Frobenius norms, log d + (1/d)·(Σ_l log ‖W_l‖_F² − 2 log γ).

    Jiang et al. 2020, LOG_SUM_OF_FRO_OVER_MARGIN eq. (38), as nitarshan computes it:
    log(d · (Π_l ‖W_l‖_F² / γ²)^{1/d}). γ the 10th-percentile training margin, sign kept,
    ValueError when γ ≤ 0.
    """
    gamma = positive_margin(ctx, "the Frobenius norm sum over the margin")
    values = layer_values(ctx, of_weight(frobenius_sq))
    d = len(values)
    return math.log(d) + (values.log().sum().item() - 2.0 * math.log(gamma)) / d


@measure("margin.path_norm_2_over_margin", family="margin", orientation="higher-worse", requires={"train_data"})
def path_norm_2_over_margin(ctx) -> float:
    """Squared ℓ2 path norm over the squared margin, Σ_paths Π_e w_e² / γ².

    Jiang et al. 2020, PATH_NORM_OVER_MARGIN eq. (43): their PATH_NORM (44) — the sum over
    paths *without* a root, i.e. ``norm.path_norm_2``² — divided by γ², γ the 10th-percentile
    training margin (sign kept; ValueError when γ ≤ 0). Not logged. Path-norm conventions as
    in :func:`path_norm` (BatchNorm folded, biases dropped). Cost: one forward pass.
    """
    gamma = positive_margin(ctx, "the path norm over the margin")
    return path_sum(ctx.folded_model(), ctx.input_shape, 2.0) / gamma**2
