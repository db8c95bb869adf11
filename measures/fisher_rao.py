"""The Fisher–Rao norm (family ``fisher-rao``).

Liang, Poggio, Rakhlin & Stokes, "Fisher-Rao metric, geometry, and complexity of neural
networks" (AISTATS 2019; arXiv:1711.01530). They define the (squared) Fisher–Rao norm of the
parameters w as ‖w‖²_fr = ⟨w, I(w) w⟩ with I(w) = E[∇_w ℓ ∇_w ℓᵀ] the Fisher information of
the loss ℓ, i.e.

    ‖w‖²_fr = E_(x,y)[ ⟨w, ∇_w ℓ(f_w(x), y)⟩² ],

and their structural lemma for rectified networks without biases (L hidden layers,
positively homogeneous in each layer's weights) gives ⟨w, ∂f_w(x)/∂w⟩ = (L+1) f_w(x), hence
‖w‖²_fr = (L+1)² E[⟨∂ℓ/∂f, f_w(x)⟩²]. That identity is what ``tests/`` checks; the measure
itself uses the general definition, so it also applies to networks with biases, BatchNorm or
convolutions (where the (L+1) form does not hold).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp

from gentest.curvature import subsample
from gentest.registry import measure

# Version 2: random draws are common to the twins of a pair (MeasureContext seeds its
# generators from the pair, not the run), so values computed by version 1 are recomputed.
VERSION = 2

SAMPLES = 2000  # seeded subsample of the training set (all of it when smaller)
CHUNK = 1000  # examples per forward-mode pass (bounds memory)


def directional_loss_derivatives(model, x: torch.Tensor, y: torch.Tensor, method: str = "jvp") -> torch.Tensor:
    """g_i = ⟨w, ∇_w ℓ_i⟩ = d/dt ℓ(f_{w+tw}(x_i), y_i) at t = 0 for every example, float64.

    ℓ is the cross-entropy of the logits; w is every trainable parameter of ``model`` (biases
    included) and the direction is w itself. ``method="jvp"``: one forward-mode pass per chunk
    (``torch.func.jvp`` of the per-example losses along w). ``method="double_backward"``: the
    same numbers by reverse-over-reverse — with u = ∇_w Σ_i c_i ℓ_i (graph kept), g = ∂⟨u, w⟩/∂c
    at c = 1. Both avoid a per-example gradient loop. The model's parameters are not changed.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    out = []
    for start in range(0, len(x), CHUNK):
        xb, yb = x[start : start + CHUNK], y[start : start + CHUNK]
        if method == "jvp":

            def losses(p):
                return F.cross_entropy(functional_call(model, p, (xb,)), yb, reduction="none")

            _, tangent = jvp(losses, (params,), (params,))
            out.append(tangent.detach().double())
        elif method == "double_backward":
            leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
            c = torch.ones(len(xb), dtype=leaves[names[0]].dtype, device=xb.device, requires_grad=True)
            per_example = F.cross_entropy(functional_call(model, leaves, (xb,)), yb, reduction="none")
            grads = torch.autograd.grad((c * per_example).sum(), list(leaves.values()), create_graph=True)
            inner = sum((g * params[n]).sum() for g, n in zip(grads, leaves))
            (g_c,) = torch.autograd.grad(inner, c)
            out.append(g_c.detach().double())
        else:
            raise ValueError(f"unknown method {method!r}")
    return torch.cat(out)


@measure("fisher-rao.norm", family="fisher-rao", version=VERSION, orientation="higher-worse", requires={"train_data"})
def fisher_rao_norm(ctx) -> float:
    """Empirical Fisher–Rao norm ‖w‖²_fr = mean_i ⟨w, ∇_w ℓ(f_w(x_i), y_i)⟩² (squared) on training data.

    Liang, Poggio, Rakhlin & Stokes 2019 (AISTATS), the Fisher–Rao norm ⟨w, I(w) w⟩ with the
    *empirical* Fisher information (expectation over the training pairs, labels as trained —
    randomized labels included — not over labels sampled from the model). For a bias-free ReLU
    net with L hidden layers this equals (L+1)² mean_i ⟨∂ℓ/∂f, f_w(x_i)⟩² (their structural
    lemma); here w is *all* trainable parameters (biases, normalization shifts included) and
    the general definition is computed, so the (L+1)² factor appears only implicitly.
    Not among nitarshan's measures; no Jiang et al. 2020 equation is claimed.

    Conventions: ℓ is the cross-entropy of the logits (natural log); trained model in eval
    mode (BatchNorm uses running statistics, no dropout); squared norm, not its root; on a
    seeded subsample of SAMPLES = 2,000 training examples (all of them if fewer). Cost: one
    forward-mode ``torch.func.jvp`` pass per 1,000 examples (≈ 2–3 forward passes); falls
    back to reverse-over-reverse differentiation if an operator lacks forward-mode support.
    """
    x, y = subsample(ctx.x_train, ctx.y_train, SAMPLES, ctx.generator)
    method = "jvp"
    try:
        g = directional_loss_derivatives(ctx.model, x, y, method)
    except (NotImplementedError, RuntimeError):
        method = "double_backward"
        g = directional_loss_derivatives(ctx.model, x, y, method)
    ctx.record(samples=len(y), method=method)
    return g.pow(2).mean().item()
