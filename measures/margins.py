"""Margin-based measures (family ``margin``): the output margin on the training set, its
inverse, and Bartlett et al.'s spectrally-normalized margin.

The output margin of an example is f_y(x) − max_{j≠y} f_j(x) on the logits of the trained
model, on the training data *as trained* (randomized labels included), **sign kept**: a
misclassified point has a negative margin. γ is its 10th percentile over the training set
(Jiang et al. 2020; ``torch.quantile`` with linear interpolation). nitarshan's code takes
``.abs()`` of that percentile, which turns a network that misclassifies more than 10% of its
training points into one with a positive margin; we do not.
"""

from __future__ import annotations

import math

import torch

from gentest.registry import measure
from measures.norms import layer_values, of_distance, of_weight, row_group_norm, spectral

QUANTILE = 0.1  # Jiang et al. 2020: the 10th percentile of the training margins


@measure("margin.output_margin", family="margin", orientation="higher-better", requires={"train_data"})
def output_margin(ctx) -> float:
    """10th percentile γ of the training-set output margins f_y(x) − max_{j≠y} f_j(x), sign kept.

    Jiang et al. 2020 (the γ of eq. (22) and of every "÷ margin" measure): the 10th percentile
    of the margins on the training set, linear interpolation between order statistics
    (``torch.quantile``). Negative when more than 10% of the training points are misclassified
    (no ``.abs()``, unlike nitarshan's code). Raw logits, no normalization.
    """
    return ctx.margin("train", QUANTILE)


@measure("margin.inverse_margin", family="margin", orientation="higher-worse", requires={"train_data"})
def inverse_margin(ctx) -> float:
    """Inverse squared margin 1/γ², γ the 10th-percentile training output margin.

    Jiang et al. 2020, INVERSE_MARGIN eq. (22). γ as in ``margin.output_margin`` (sign kept).
    When γ ≤ 0 — more than 10% of the training points misclassified or on the decision
    boundary — 1/γ² is undefined (squaring a negative γ would report a badly fitting network
    as having a large margin), so this raises ValueError and the harness records an error for
    that run.
    """
    gamma = ctx.margin("train", QUANTILE)
    if gamma <= 0:
        raise ValueError(
            f"inverse margin is undefined: the 10th-percentile training margin is {gamma:.4g} <= 0 "
            "(more than 10% of the training points are misclassified or on the decision boundary)"
        )
    return 1.0 / gamma**2


def log_spectral_complexity(ctx) -> float:
    """log R_A of Bartlett et al. 2017 with reference matrices M_i = W_i⁰ (see below)."""
    log_spec = layer_values(ctx, of_weight(spectral)).log()  # log ‖A_i‖_σ
    group = layer_values(ctx, of_distance(lambda w: row_group_norm(w, 2.0, 1.0)))  # ‖A_iᵀ − M_iᵀ‖_{2,1}
    if torch.isinf(log_spec).any():
        raise ValueError("spectral complexity is undefined: a layer's weight matrix is zero")
    if (group == 0).all():
        raise ValueError(
            "spectral complexity is zero (trained weights equal the initial ones), "
            "so the normalized margin is undefined"
        )
    # log Σ_i (g_i / s_i)^{2/3} = logsumexp((2/3)(log g_i − log s_i)); a g_i = 0 term is exp(−inf) = 0.
    log_sum = torch.logsumexp((2.0 / 3.0) * (group.log() - log_spec), dim=0)
    return (log_spec.sum() + 1.5 * log_sum).item()


@measure(
    "margin.spectral_normalized_margin",
    family="margin",
    orientation="higher-better",
    requires={"init", "train_data"},
)
def spectral_normalized_margin(ctx) -> float:
    """Spectrally-normalized margin γ / R_A: 10th-percentile training margin over Bartlett's spectral complexity.

    Bartlett, Foster & Telgarsky, "Spectrally-normalized margin bounds for neural networks"
    (NeurIPS 2017), Theorem 1.1 and its spectral complexity

        R_A = (Π_i ‖A_i‖_σ) · (Σ_i (‖A_iᵀ − M_iᵀ‖_{2,1} / ‖A_i‖_σ)^{2/3})^{3/2}

    (1-Lipschitz activations: ReLU, max-pooling, so ρ_i = 1). Conventions:

    - A_i are the Linear/Conv weight matrices of ``ctx.layers()`` in PyTorch's (out, in)
      layout (conv kernels reshaped, not the conv operator; biases left out; BatchNorm folded
      into the preceding layer, see gentest.context). ‖·‖_σ is the spectral norm.
    - ‖Aᵀ‖_{2,1} is the (2,1) group norm of Aᵀ: the sum over the columns of Aᵀ of their L2
      norms. Bartlett's A_i maps R^{d_{i−1}} → R^{d_i}, i.e. it is (out, in) like PyTorch's,
      so the columns of Aᵀ are the rows of A — one per output unit — and we sum the L2 norms
      of the rows (``vector_norm(W − W⁰, dim=1).sum()``).
    - Reference matrices M_i = the initial weights W_i⁰ (fixed before training, hence
      data-independent as the theorem requires; Jiang's "init" variants make the same choice).
    - Value: γ / R_A with γ the 10th-percentile training margin, sign kept (so negative when
      more than 10% of the training points are misclassified). The theorem's bound scales as
      ‖X‖₂·R_A/(γ·n) up to log factors; the data factor ‖X‖₂/n and the log factors are left
      out, so this is the margin normalized by R_A only. (n is equal for twins; ‖X‖₂ is not
      under input randomizations such as ``gaussian``, which this value does not account for.)
    - R_A is computed in the log domain (Σ log ‖A_i‖_σ, logsumexp for the sum) and the value
      is γ · exp(−log R_A), so deep products do not overflow.

    Raises ValueError when R_A is 0 (trained weights equal the reference, e.g. an untrained
    model) or undefined (a zero weight matrix).
    """
    gamma = ctx.margin("train", QUANTILE)
    return gamma * math.exp(-log_spectral_complexity(ctx))
