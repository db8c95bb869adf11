"""Optimization-based measures (family ``optimization``): how long SGD took to fit the
training set, read from the run's training record (``ctx.metrics``).

Zhang et al. 2017 ("Understanding deep learning requires rethinking generalization"), Figure
1a–b: fitting random labels or random pixels takes longer than fitting the true labels (the
"relative convergence time" grows with the fraction of corrupted labels). Jiang et al. 2020
("Fantastic generalization measures and where to find them"), optimization-based measures:
the number of steps to reach train cross-entropy 0.1, and the number of steps from 0.1 to
0.01 (their equation numbers not checked). All three claim that a slower fit means worse
generalization (higher-worse).

Conventions (see ``gentest.training``):

- A *step* is one SGD update on one mini-batch.
- The learning curve is recorded once per epoch, after its last step, with the train
  accuracy and cross-entropy of the *whole* training set (as trained) in eval mode. So the
  milestones have **epoch granularity**: a milestone is the step count at the end of the
  first epoch whose recorded loss is ≤ the level, a multiple of the steps per epoch
  (⌈n_train / batch_size⌉: 32 on the default suite), not the exact step at which the loss
  crossed.
- ``steps_to_fit`` is the step count when the stopping rule was met (train accuracy ≥
  ``stop_train_acc``, 100 % by default, or train CE < ``stop_train_loss``), None if the run
  ran out of epochs first.

When a milestone is missing, the measure distinguishes two cases: the run *fitted* (its
stopping rule was met) before its training loss reached the level, so the suite's stopping
rule leaves the milestone unobserved — :class:`NotApplicable`; or the run never fitted and
never reached the level within ``max_epochs`` — a failed run, ``ValueError``. On the stored
default-suite runs (MNIST-1D, MLP 3×512, stop at 100 % train accuracy) both milestones are
reached by every run, 0.01 at or before the fitting epoch. A context without a training
record (an in-memory context, ``ctx.metrics == {}``) raises NotApplicable.
"""

from __future__ import annotations

from typing import Any

from gentest.errors import NotApplicable
from gentest.registry import measure


def _record(ctx, key: str) -> dict[str, Any]:
    metrics = ctx.metrics or {}
    if key not in metrics:
        raise NotApplicable(f"the run has no training record of '{key}' (ctx.metrics lacks it)")
    return metrics


def _stopping_rule(ctx) -> str:
    """The run's stopping rule in words, from its spec (or 'unknown' without one)."""
    train = getattr(getattr(ctx, "spec", None), "train", None)
    if train is None:
        return "unknown"
    rules = []
    if train.stop_train_acc is not None:
        rules.append(f"train accuracy >= {train.stop_train_acc:g}")
    if train.stop_train_loss is not None:
        rules.append(f"train cross-entropy < {train.stop_train_loss:g}")
    rule = " or ".join(rules) or "none"
    return f"{rule}, at most {train.max_epochs} epochs"


def _milestone(ctx, level: str) -> int:
    """Steps until the recorded train cross-entropy first was ≤ ``level`` (see the module docstring)."""
    metrics = _record(ctx, "steps_to_loss")
    milestones = metrics["steps_to_loss"] or {}
    if level not in milestones and float(level) not in milestones:
        raise NotApplicable(f"the run's training record has no train cross-entropy milestone {level}")
    steps = milestones.get(level, milestones.get(float(level)))
    if steps is not None:
        return int(steps)
    final = metrics.get("train_loss")
    final_text = f"; its final train cross-entropy is {final:.4g}" if final is not None else ""
    if metrics.get("steps_to_fit") is not None:
        raise NotApplicable(
            f"the run stopped before train cross-entropy reached {level} "
            f"(stopping rule: {_stopping_rule(ctx)}; it fitted after {metrics['steps_to_fit']} steps{final_text})"
        )
    raise ValueError(
        f"train cross-entropy never reached {level}: the run did not fit within its epochs "
        f"(stopping rule: {_stopping_rule(ctx)}{final_text})"
    )


@measure("optimization.steps_to_fit", family="optimization", orientation="higher-worse")
def steps_to_fit(ctx) -> float:
    """Number of SGD steps until the run's stopping rule was met (100 % train accuracy by default).

    Zhang et al. 2017, Figure 1b (convergence time grows with label corruption; time to fit
    random labels is a "small constant factor" longer). Read from the training record
    (``ctx.metrics["steps_to_fit"]``); epoch granularity (the rule is checked on the whole
    training set after each epoch). Twins train to the same rule, so the counts are
    comparable. Raises ValueError when the run did not fit within ``max_epochs``. Cost: none.
    """
    metrics = _record(ctx, "steps_to_fit")
    steps = metrics["steps_to_fit"]
    if steps is None:
        raise ValueError(
            f"the run did not fit: its stopping rule ({_stopping_rule(ctx)}) was not met "
            f"after {metrics.get('epochs', '?')} epochs ({metrics.get('steps', '?')} steps)"
        )
    return float(steps)


@measure("optimization.steps_to_loss_0.1", family="optimization", orientation="higher-worse")
def steps_to_loss_01(ctx) -> float:
    """Number of SGD steps until the train cross-entropy is ≤ 0.1.

    Jiang et al. 2020, optimization-based measures: "#steps to reach cross-entropy 0.1".
    ``ctx.metrics["steps_to_loss"]["0.1"]``: the step count at the end of the first epoch whose
    whole-training-set cross-entropy (eval mode, labels as trained) was ≤ 0.1 — epoch
    granularity. Raises ValueError when the run never reached 0.1 and did not fit, and
    NotApplicable when it fitted (stopping rule) before reaching 0.1. Cost: none.
    """
    return float(_milestone(ctx, "0.1"))


@measure("optimization.steps_0.1_to_0.01", family="optimization", orientation="higher-worse")
def steps_01_to_001(ctx) -> float:
    """Number of SGD steps from train cross-entropy 0.1 to 0.01.

    Jiang et al. 2020, optimization-based measures: "#steps from cross-entropy 0.1 to 0.01".
    The difference of the milestones ``steps_to_loss["0.01"] − steps_to_loss["0.1"]`` (each at
    the end of the first epoch whose whole-training-set cross-entropy was ≤ the level), so a
    multiple of the steps per epoch and 0 when both levels were crossed in the same epoch.
    Jiang et al. train every model to CE 0.01; gentest's default rule stops at 100 % train
    accuracy, which can come first: then the 0.01 milestone is unobserved and this raises
    NotApplicable naming the stopping rule (ValueError if the run never fitted at all).
    Cost: none.
    """
    start = _milestone(ctx, "0.1")
    return float(_milestone(ctx, "0.01") - start)
