"""Pair weights and effective sample sizes (Dziugaite et al., "In search of robust measures of
generalization", NeurIPS 2020, section 4 and their code, ``coupled_networks``).

A pair of networks is only evidence about a measure if the two gaps really differ. The gaps are
estimated on finite test sets, so two gaps closer than the test sets can resolve order the pair
by Monte-Carlo noise. Dziugaite et al. weight each pair by their confidence that the gaps differ.

* **Hoeffding confidence.** With ``n`` test points the test accuracy, and so the gap, is within
  ``t`` of its expectation with probability at least ``1 − 2·exp(−2 n t²)`` (Hoeffding). Both
  gaps within ``|Δg|/2`` of theirs means their order is right, so the confidence that the
  observed order is the true one is at least

      ψ = max(0, 1 − 2·exp(−2 n₁ (Δg/2)²)) · max(0, 1 − 2·exp(−2 n₂ (Δg/2)²)),

  which is Dziugaite et al.'s ``ψ_H(|Δg|) = max(0, 1 − 2·exp(−2n(Δg/2)²))²`` when both test
  sets hold ``n`` points. (They had one test-set size; with two sizes each gap gets its own
  factor, the product form above: the two events are independent.)
* **Weight.** ``w = (ψ − ½)₊``: pairs whose order is less likely than not to be right beyond a
  coin flip get weight 0. At ``n = 1,000`` that is every ``|Δg| < 0.062``; at ``n = 10,000``,
  ``|Δg| < 0.020``. The largest weight is ½.
* **Effective sample size** of a weighted set (Kish): ``(Σw)² / Σw²``. Dziugaite et al. keep an
  environment in the worst case only when it reaches 12.

Without a known test-set size (``n`` is None) a pair gets the indicator weight 1 when its gaps
differ and 0 when they are equal, the rule gentest used before weights; the board says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

HALF = 0.5


def hoeffding_confidence(delta_gap: float, n_a: int, n_b: int) -> float:
    """ψ: the Hoeffding lower bound on the probability that two gaps measured on ``n_a`` and
    ``n_b`` test points are ordered as observed, given their difference ``delta_gap``."""
    x = abs(delta_gap) / 2

    def one(n: int) -> float:
        return max(0.0, 1.0 - 2.0 * math.exp(-2.0 * n * x * x))

    return one(n_a) * one(n_b)


def pair_weight(gap_a: float, gap_b: float, n_a: int | None, n_b: int | None) -> float:
    """Dziugaite et al.'s weight ``(ψ − ½)₊`` of a pair; the indicator ``Δg ≠ 0`` without sizes."""
    if gap_a == gap_b:
        return 0.0
    if n_a is None or n_b is None:
        return 1.0
    return max(0.0, hoeffding_confidence(gap_a - gap_b, n_a, n_b) - HALF)


def resolvable_gap(n: int) -> float:
    """The smallest ``|Δg|`` that gets a positive weight when both test sets hold ``n`` points:
    where ``(1 − 2·exp(−n x²/2))² = ½``, i.e. ``x = sqrt(2 ln(2 / (1 − 1/√2)) / n)``."""
    return math.sqrt(2.0 * math.log(2.0 / (1.0 - math.sqrt(HALF))) / n)


def effective_sample_size(weights: Iterable[float]) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²``; 0 for no positive weight."""
    ws = [float(w) for w in weights]
    s2 = sum(w * w for w in ws)
    return (sum(ws) ** 2 / s2) if s2 > 0 else 0.0
