"""Input–output sensitivity (family ``sensitivity``): the norm of the Jacobian of the logits
with respect to the input.

Novak, Bahri, Abolafia, Pennington & Sohl-Dickstein, "Sensitivity and generalization in
neural networks: an empirical study" (ICLR 2018), the "Jacobian norm" sensitivity metric: the
Frobenius norm ‖J(x)‖_F of the input–output Jacobian, averaged over data points. They find
trained networks less sensitive near the training data, the norm correlating with the
generalization gap, and random labels or full-batch training giving *less* robust (higher
norm) functions. Novak et al. differentiate the softmax output (class probabilities); we
differentiate the logits (see the measure's docstring). The PGDL starter kit's "Jacobian"
baseline (Foret, 2020) is different again: the mean of the *mean squared* entries of the
Jacobians of the output w.r.t. every layer's input, over 512 examples.
"""

from __future__ import annotations

import torch

from gentest.curvature import subsample
from gentest.registry import measure

# Version 2: random draws are common to the twins of a pair (MeasureContext seeds its
# generators from the pair, not the run), so values computed by version 1 are recomputed.
VERSION = 2

SAMPLES = 2000  # seeded subsample of the training inputs (all of them when fewer)
CHUNK = 1000  # examples per batch of backward passes


def input_jacobian_frobenius(model, x: torch.Tensor) -> torch.Tensor:
    """‖∂f(x_i)/∂x_i‖_F for every example i (float64), with one backward pass per output class.

    Valid when examples do not interact in the forward pass (eval mode: BatchNorm with running
    statistics), so that ∂(Σ_i f_k(x_i))/∂x_i = ∂f_k(x_i)/∂x_i. The model is not changed.
    """
    norms = []
    for start in range(0, len(x), CHUNK):
        xb = x[start : start + CHUNK].detach().clone().requires_grad_(True)
        logits = model(xb)
        sq = torch.zeros(len(xb), dtype=torch.float64, device=xb.device)
        num_classes = logits.shape[1]
        for k in range(num_classes):
            (gk,) = torch.autograd.grad(logits[:, k].sum(), xb, retain_graph=k < num_classes - 1)
            sq += gk.reshape(len(xb), -1).double().pow(2).sum(dim=1)
        norms.append(sq.sqrt())
    return torch.cat(norms)


@measure("sensitivity.input_jacobian_norm", family="sensitivity", version=VERSION, orientation="higher-worse", requires={"train_data"})
def input_jacobian_norm(ctx) -> float:
    """Mean over training inputs of the Frobenius norm ‖∂f(x)/∂x‖_F of the logits' input Jacobian.

    Novak et al. 2018 (ICLR), the Jacobian norm ‖J(x)‖_F, J(x) = ∂f(x)/∂xᵀ; also the idea
    behind the PGDL "Jacobian" baseline (see the module docstring for how both differ). No
    Jiang et al. 2020 equation. Conventions: the Jacobian of the *logits*, not of the softmax
    as in Novak et al. (on training points fitted to near-zero loss the softmax saturates —
    ∂p/∂f = diag(p) − ppᵀ → 0 — so its Jacobian mostly measures confidence rather than the
    sensitivity of the function); the root of the sum of squares over all
    (class, input) entries, not squared; averaged (arithmetic mean) over a seeded subsample of
    SAMPLES = 2,000 training inputs as trained (randomized pixels included; all of them if
    fewer); trained model in eval mode. Inputs are the network's inputs after the dataset's
    normalization. Cost: C backward passes per 1,000 examples (C = number of classes).
    """
    x, _ = subsample(ctx.x_train, ctx.y_train, SAMPLES, ctx.generator)
    ctx.record(samples=len(x))
    return input_jacobian_frobenius(ctx.model, x).mean().item()
