"""Norm-based generalization bounds (family ``bound``), in the log domain.

Each measure is the natural log of a margin-based generalization bound's complexity term, in
the form bneyshabur/generalization-bounds (``measures.calculate``) evaluates it: "constants
and additive logarithmic factors are not included". Every value is higher-worse.

Conventions shared by every measure here:

- Layers are those of ``ctx.layers()``: the Linear/Conv layers in forward order, conv kernels
  reshaped to (out, in·k…), **BatchNorm folded** into the preceding layer (as bneyshabur's
  ``reparam``; NotApplicable when it cannot be), biases left out of the matrices. d is the
  number of such layers (bneyshabur's ``depth``: one per Linear/Conv module, also for branched
  models).
- γ is the 10th percentile of the training output margins, sign kept (Jiang et al. 2020 and
  ``margin.output_margin``; bneyshabur uses the 5th percentile). A bound with γ ≤ 0 is
  undefined: ValueError.
- m = ``ctx.n_train`` (the training set as trained). ω = the number of parameters of the
  model (weights, biases, normalization shifts — what ``control.param_count`` counts).
- Dropped everywhere, as in bneyshabur: the norm of the data (max or total ‖x‖; bneyshabur
  assumes normalized inputs — note the input-randomizing twins, e.g. Gaussian pixels, can
  differ in it), numeric constants, the confidence term √(log(1/δ)/m), and the additive log
  terms from union bounds over norm scales. What each bound keeps is in its docstring.
- Computed as sums of logs (per-layer log norms), so deep products do not overflow.
"""

from __future__ import annotations

import math

from gentest.registry import measure
from measures.margins import log_spectral_complexity
from measures.norms import frobenius, frobenius_sq, layer_values, of_distance, of_weight, positive_margin, spectral
from measures.rademacher import n_params


def input_dim(ctx) -> int:
    """The number of input coordinates, Π of the input shape (c·h·w for images)."""
    return math.prod(ctx.input_shape)


@measure(
    "bound.bartlett_spectral",
    family="bound",
    orientation="higher-worse",
    requires={"init", "train_data"},
)
def bartlett_spectral(ctx) -> float:
    """Log of Bartlett et al.'s spectral bound, log(log m · log ω · R_A / (γ√m)).

    Bartlett, Foster & Telgarsky, "Spectrally-normalized margin bounds for neural networks"
    (NeurIPS 2017), Theorem 1.1, in bneyshabur's "Spec_L_{2,1} Bound (Bartlett et al. 2017)"
    form: β · R_A / (γ √m) with β = log m · log ω and the spectral complexity

        R_A = Π_l ‖W_l‖_σ · (Σ_l (‖(W_l − W_l⁰)ᵀ‖_{2,1} / ‖W_l‖_σ)^{2/3})^{3/2}

    (reference matrices M_l = the initial weights; ‖·ᵀ‖_{2,1} = the sum over output units of
    the L2 norms of their incoming-weight differences — see ``margin.spectral_normalized_margin``,
    whose log R_A this reuses). Kept: β = log m · log ω (bneyshabur's log factors; the
    theorem's is log(W) with W the maximum width, times log n). Dropped: ‖X‖₂ (the data norm
    of the theorem), the constants and the √(log(1/δ)/m) term. Jiang et al. 2020 have no
    equation for it (their (29)/(31) are the PAC-Bayes / product forms). Natural log.

    ValueError when γ ≤ 0, when R_A is 0 (trained weights equal the initial ones) or
    undefined, and when m or ω is below 2 (log log undefined). Cost: one SVD-based norm per
    layer.
    """
    gamma = positive_margin(ctx, "the Bartlett et al. spectral bound")
    m, omega = ctx.n_train, n_params(ctx)
    if m < 2 or omega < 2:
        raise ValueError(f"the Bartlett et al. bound's log m · log ω factor needs m, ω >= 2 (m={m}, ω={omega})")
    beta = math.log(math.log(m)) + math.log(math.log(omega))
    return beta + log_spectral_complexity(ctx) - math.log(gamma) - 0.5 * math.log(m)


@measure(
    "bound.neyshabur2018_spectral_frobenius",
    family="bound",
    orientation="higher-worse",
    requires={"init", "train_data"},
)
def neyshabur2018_spectral_frobenius(ctx) -> float:
    """Log of Neyshabur et al. 2018's PAC-Bayes spectral–Frobenius bound, log(d · Π_l σ_l · √(Σ_l h_l ‖W_l − W_l⁰‖_F² / σ_l²) / (γ√m)).

    Neyshabur, Bhojanapalli & Srebro, "A PAC-Bayesian approach to spectrally-normalized margin
    bounds for neural networks" (ICLR 2018), Theorem 1, in bneyshabur's "Spec_Fro Bound
    (Neyshabur et al. 2018)" form: σ_l = σ_max(W_l), h_l = the number of output units
    (rows; output channels for a conv) of layer l — bneyshabur's per-layer ``n_hidden`` inside
    the sum, where the theorem has one h = the maximum width outside it — and the distance
    from initialization ‖W_l − W_l⁰‖_F in place of the theorem's ‖W_l‖_F (as bneyshabur and
    Jiang's LOG_SPEC_INIT_MAIN (29) do). Kept: the depth factor d. Dropped: the input-norm
    bound B, √(ln(d·h)), the constants and the δ term. Natural log:
    log d + Σ_l log σ_l + ½ log Σ_l h_l ‖W_l − W_l⁰‖_F²/σ_l² − log γ − ½ log m.

    ValueError when γ ≤ 0, when every layer equals its initial value (log 0) or a weight
    matrix is zero. Cost: one SVD-based norm per layer.
    """
    gamma = positive_margin(ctx, "the Neyshabur et al. 2018 spectral-Frobenius bound")
    log_spec = layer_values(ctx, of_weight(spectral)).log()
    dist_sq = layer_values(ctx, of_distance(frobenius_sq))
    width = layer_values(ctx, lambda layer: layer.weight.new_tensor(float(layer.weight.shape[0])))
    if not log_spec.isfinite().all():
        raise ValueError("the spectral-Frobenius bound is undefined: a layer's weight matrix is zero")
    ratio = (width * dist_sq / (2.0 * log_spec).exp()).sum().item()
    if ratio == 0:
        raise ValueError(
            "the spectral-Frobenius bound is zero (trained weights equal the initial ones), so its log is undefined"
        )
    d, m = len(log_spec), ctx.n_train
    return math.log(d) + log_spec.sum().item() + 0.5 * math.log(ratio) - math.log(gamma) - 0.5 * math.log(m)


@measure("bound.golowich_frobenius", family="bound", orientation="higher-worse", requires={"train_data"})
def golowich_frobenius(ctx) -> float:
    """Log of the Frobenius-norm bound with Golowich et al.'s depth factor, log(√(d + log D) · Π_l ‖W_l‖_F / (γ√m)).

    Golowich, Rakhlin & Shamir, "Size-independent sample complexity of neural networks"
    (COLT 2018), Theorem 1: the Rademacher complexity of depth-d ReLU nets with ‖W_l‖_F ≤ M_F(l)
    is ≲ B·√d·Π_l M_F(l)/√m, improving Neyshabur et al. 2015's 2^d (``rademacher.neyshabur2015_frobenius``).
    bneyshabur's "Frobenious Bound" uses α = √(d + log(c·h·w)) for the depth factor; D here is
    the input dimension Π ``ctx.input_shape`` (c·h·w for images, 40 for MNIST-1D). Dropped:
    the input norm B, the constants and the δ term. Natural log:
    ½ log(d + log D) + Σ_l log ‖W_l‖_F − log γ − ½ log m. ValueError when γ ≤ 0.
    """
    gamma = positive_margin(ctx, "the Golowich et al. Frobenius bound")
    log_fro = layer_values(ctx, of_weight(frobenius)).log()
    d, m = len(log_fro), ctx.n_train
    alpha_sq = d + math.log(input_dim(ctx))
    return 0.5 * math.log(alpha_sq) + log_fro.sum().item() - math.log(gamma) - 0.5 * math.log(m)
