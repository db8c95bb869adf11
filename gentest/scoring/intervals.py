"""A 95 % interval for a weighted sign-error that holds with few seeds and clustered pairs.

The sign-error is a weighted mean of per-pair losses ``ℓ ∈ {0, ½, 1}``. gentest used to give
the percentile bootstrap over seeds; with two or three seeds that is the min–max range of the
per-seed sign-errors and covers the true value only about three times in four. This interval
instead treats the pairs as the sample, and corrects the sample size twice:

1. **Weights** (Kish): pairs weighted by Dziugaite et al.'s confidence carry
   ``n_w = (Σw)² / Σw²`` pairs' worth of information.
2. **Clusters** (design effect): the pairs of one natural run share that network (its value of
   the measure and its gap), so their losses are correlated. With the intra-cluster correlation
   ``ρ`` of the losses, estimated by one-way ANOVA over the clusters and clipped to [0, 1], and
   the size-weighted mean cluster size ``m̄ = Σ m_c² / Σ m_c``, the design effect is
   ``deff = 1 + (m̄ − 1) ρ`` (Kish 1965) and the effective count ``n_eff = n_w / deff``. One
   cluster of several pairs gives ``ρ = 1``: it counts as one observation.

The interval is then the **Clopper–Pearson** interval for ``x = ŝ · n_eff`` successes out of
``n_eff`` trials, in its Beta form, which accepts non-integer counts:
``[B(α/2; x, n−x+1), B(1−α/2; x+1, n−x)]``. Clopper–Pearson never covers less than its level for
a binomial count; a loss of ½ (a tie) has less variance than a coin of the same mean, so ties
only make it more conservative. Its coverage on boards of the shapes of ``quick`` and
``standard`` with clustered losses is measured in ``tests/test_scoring_intervals.py`` (at an
intra-cluster correlation of 0.1: at least 94.6 % at every true sign-error from 0 to 0.5). Its
known weak spot: with strong clustering (ρ = 0.3) and a true sign-error near 0.05, coverage on
``standard``'s shape falls to about 92 %, because one or two errors cannot reveal the clustering
to the ANOVA.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


def intra_cluster_correlation(values: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """ANOVA estimate of the intra-cluster correlation of ``values``, clipped to [0, 1].

    0 when every cluster holds one value (no within-cluster pairs, nothing to correlate) or
    every value is the same; 1 for a single cluster of several values (it cannot be told apart
    from one shared draw) and when clusters differ but each is constant.
    """
    groups: dict[Hashable, list[float]] = defaultdict(list)
    for v, c in zip(values, clusters):
        groups[c].append(float(v))
    k, n = len(groups), len(values)
    if n == k:
        return 0.0
    if k == 1:
        return 1.0
    grand = float(np.mean(values))
    sizes = np.array([len(g) for g in groups.values()], dtype=float)
    means = np.array([np.mean(g) for g in groups.values()])
    msb = float(np.sum(sizes * (means - grand) ** 2) / (k - 1))
    msw = float(sum(np.sum((np.array(g) - m) ** 2) for g, m in zip(groups.values(), means)) / (n - k))
    if msb == 0 and msw == 0:
        return 0.0
    if msw == 0:
        return 1.0
    m0 = (n - float(np.sum(sizes**2)) / n) / (k - 1)
    rho = (msb - msw) / (msb + (m0 - 1) * msw)
    return float(min(1.0, max(0.0, rho)))


def design_effect(values: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """Kish's ``1 + (m̄ − 1) ρ`` with ``m̄ = Σ m_c² / Σ m_c``."""
    sizes: dict[Hashable, int] = defaultdict(int)
    for c in clusters:
        sizes[c] += 1
    n = sum(sizes.values())
    if n == 0:
        return 1.0
    m_bar = sum(m * m for m in sizes.values()) / n
    return 1.0 + (m_bar - 1.0) * intra_cluster_correlation(values, clusters)


def clopper_pearson(x: float, n: float, level: float = LEVEL) -> tuple[float, float]:
    """The Clopper–Pearson interval for ``x`` successes in ``n`` trials (real-valued counts)."""
    if n <= 0:
        raise ValueError("clopper_pearson needs n > 0")
    x = min(max(x, 0.0), n)
    alpha = 1.0 - level
    lo = 0.0 if x <= 0 else float(stats.beta.ppf(alpha / 2, x, n - x + 1))
    hi = 1.0 if x >= n else float(stats.beta.ppf(1 - alpha / 2, x + 1, n - x))
    return lo, hi


def sign_error_interval(
    losses: Sequence[float], weights: Sequence[float], clusters: Sequence[Hashable], level: float = LEVEL
) -> tuple[tuple[float, float], float, float] | None:
    """The interval of the weighted mean of ``losses`` (module docstring), its effective count
    ``n_eff`` and the design effect; None when no pair has a positive weight."""
    kept = [(float(l), float(w), c) for l, w, c in zip(losses, weights, clusters) if w > 0]
    if not kept:
        return None
    ls = np.array([k[0] for k in kept])
    ws = np.array([k[1] for k in kept])
    mean = float(np.sum(ws * ls) / np.sum(ws))
    n_kish = float(np.sum(ws) ** 2 / np.sum(ws**2))
    deff = design_effect(ls, [k[2] for k in kept])
    n_eff = n_kish / deff
    return clopper_pearson(mean * n_eff, n_eff, level), n_eff, deff
