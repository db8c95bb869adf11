"""Stability estimates from a retrain with k training examples replaced by fresh draws.

Uniform stability (Bousquet & Elisseeff 2002, Definition 6; for SGD, Hardt, Recht & Singer
2016, Definition 2.1) bounds how much the loss on an example can change when one training
example is replaced. Zhang et al. (2017, section 5) argue that uniform stability is a property
of the algorithm alone and therefore cannot tell natural from random labels; these empirical
estimates, which depend on the data, are what the randomization test can interrogate.

All three measures share one retrain per run (``K_REPLACED`` = 10 examples replaced, same seed
and settings; see :mod:`gentest.stability`). The retrain is stored as a run of its own, so its
cost, a full training run to the same stopping rule, is paid once and is recorded with each
value (``retrain_s``). It keeps no learning curve: after each epoch it checks only its
stopping rule (``gentest.training.stopping_rule_met``), the same batches, steps and stopping
epoch as a curve-keeping training, without the evaluation passes over both splits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gentest.registry import measure

K_REPLACED = 10
# Retraining is a whole training run; the evaluation's per-measure time limit must allow it.
RETRAIN_TIMEOUT_S = 3600.0


def _retrain(ctx):
    run, model = ctx.retrained(K_REPLACED)
    positions = torch.tensor(run.randomization["replaced_positions"], device=ctx.device)
    ctx.record(k=K_REPLACED, retrain_key=run.key, retrain_s=run.metrics["wall_s"], retrain_epochs=run.metrics["epochs"])
    return run, model, positions


@measure(
    "stability.replace_loss_change",
    family="stability",
    orientation="higher-worse",
    requires={"retrain", "train_data"},
    timeout_s=RETRAIN_TIMEOUT_S,
)
def replace_loss_change(ctx) -> float:
    """Mean increase in loss on the replaced examples when they are left out of training.

    (1/k) Σ_i [ℓ(A(S^i), z_i) − ℓ(A(S), z_i)] over the k replaced training examples z_i (as
    trained: with their randomized labels), cross-entropy, where A(S^i) is the retrain without
    them — the empirical counterpart of the replace-one loss difference that uniform stability
    bounds (Bousquet & Elisseeff 2002, Def. 6).
    """
    _, retrained, positions = _retrain(ctx)
    x, y = ctx.x_train[positions], ctx.y_train[positions]
    with torch.no_grad():
        with_them = F.cross_entropy(ctx.model(x), y, reduction="none")
        without = F.cross_entropy(retrained(x), y, reduction="none")
    return (without - with_them).mean().item()


@measure(
    "stability.replace_param_distance",
    family="stability",
    orientation="higher-worse",
    requires={"retrain"},
    timeout_s=RETRAIN_TIMEOUT_S,
)
def replace_param_distance(ctx) -> float:
    """‖w_S − w_{S^i}‖₂ over all parameters: how far replacing k examples moves the weights.

    Hardt et al. (2016) bound SGD's uniform stability through exactly this parameter
    divergence (their Lemma 3.11 / the growth recursions of section 2).
    """
    _, retrained, _ = _retrain(ctx)
    ours = torch.cat([p.detach().reshape(-1) for p in ctx.model.parameters()])
    theirs = torch.cat([p.detach().reshape(-1) for p in retrained.parameters()])
    return torch.linalg.vector_norm((ours - theirs).double()).item()


@measure(
    "stability.replace_test_disagreement",
    family="stability",
    orientation="higher-worse",
    requires={"retrain", "test_data"},
    timeout_s=RETRAIN_TIMEOUT_S,
)
def replace_test_disagreement(ctx) -> float:
    """Fraction of test inputs on which A(S) and A(S^i) predict different classes.

    A prediction-level stability estimate (cf. the disagreement of Nakkiran & Bansal 2020 and
    Jiang et al. 2022, here between runs that differ in k training examples, not in seed).
    """
    _, retrained, _ = _retrain(ctx)
    with torch.no_grad():
        ours = ctx.logits("test").argmax(1)
        theirs = retrained(ctx.x_test).argmax(1)
    return (ours != theirs).double().mean().item()
