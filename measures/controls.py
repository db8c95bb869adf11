"""Controls: two measures whose verdicts are known in advance, to keep the scoring honest.

- ``control.gap`` is the measured generalization gap (train accuracy − test accuracy): an
  oracle, so it must separate every natural/randomized pair (sign-error 0).
- ``control.param_count`` is a property of the hypothesis class alone (Zhang et al. 2017's
  point about VC-style counts): identical within each pair, so it must tie every pair.

If they do not score so, the suite is broken (e.g. twins whose gaps are equal), not the
measures; the report says so.
"""

from gentest.registry import measure


@measure("control.gap", family="control", orientation="higher-worse")
def gap(ctx) -> float:
    """The generalization gap, train accuracy − test accuracy: the oracle control."""
    return float(ctx.metrics["gap"])


@measure("control.param_count", family="control", orientation="higher-worse")
def param_count(ctx) -> float:
    """The number of parameters: equal for both twins, so it must tie every pair."""
    return float(sum(p.numel() for p in ctx.model.parameters()))
