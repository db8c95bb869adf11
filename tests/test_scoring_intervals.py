"""The sign-error's 95 % interval: Clopper–Pearson against scipy's exact binomial interval, the
design effect by hand, and its coverage simulated on boards of the shapes of ``quick`` and
``standard`` with a known true sign-error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gentest.scoring.intervals import clopper_pearson, design_effect, intra_cluster_correlation, sign_error_interval


@pytest.mark.parametrize("k, n", [(0, 6), (1, 6), (3, 6), (6, 6), (0, 144), (7, 144), (72, 144)])
def test_clopper_pearson_is_scipys_exact_interval_on_integer_counts(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-10)


def test_clopper_pearson_moves_continuously_between_integer_counts():
    lo3, hi3 = clopper_pearson(3, 10)
    lo35, hi35 = clopper_pearson(3.5, 10)
    lo4, hi4 = clopper_pearson(4, 10)
    assert lo3 < lo35 < lo4 and hi3 < hi35 < hi4


def test_intra_cluster_correlation_by_hand():
    # Two clusters of two: (0, 0) and (1, 1). Grand mean ½; MSB = 2·(¼ + ¼)/1 = 1; MSW = 0 -> ρ = 1.
    assert intra_cluster_correlation([0, 0, 1, 1], ["a", "a", "b", "b"]) == 1.0
    # (0, 1) and (0, 1): the clusters are alike, MSB = 0, MSW = ½: ANOVA gives −1, clipped to 0.
    assert intra_cluster_correlation([0, 1, 0, 1], ["a", "a", "b", "b"]) == 0.0
    # Three clusters of two: (0, 0), (0, 1), (1, 1). Grand mean ½, cluster means 0, ½, 1.
    # MSB = 2·(¼ + 0 + ¼)/2 = ½; MSW = (0 + ½ + 0)/3 = 1/6; m0 = 2;
    # ρ = (½ − 1/6)/(½ + 1/6) = ½.
    assert intra_cluster_correlation([0, 0, 0, 1, 1, 1], ["a", "a", "b", "b", "c", "c"]) == pytest.approx(0.5)
    assert design_effect([0, 0, 0, 1, 1, 1], ["a", "a", "b", "b", "c", "c"]) == pytest.approx(1 + (2 - 1) * 0.5)
    # Singletons carry no within-cluster information; one cluster of several counts as one draw.
    assert intra_cluster_correlation([0, 1, 1], ["a", "b", "c"]) == 0.0
    assert design_effect([0, 1, 1], ["a", "a", "a"]) == pytest.approx(3.0)


def test_the_interval_uses_kish_and_the_design_effect():
    # Clusters (0, 0), (0, 1), (1, 1) with equal weights: n_w = 6, deff 1.5, so 4 effective
    # pairs with sign-error ½: Clopper–Pearson for 2 of 4.
    (lo, hi), n_eff, deff = sign_error_interval([0, 0, 0, 1, 1, 1], [0.5] * 6, ["a", "a", "b", "b", "c", "c"])
    assert deff == pytest.approx(1.5) and n_eff == pytest.approx(4.0)
    assert (lo, hi) == pytest.approx(clopper_pearson(2, 4))
    # Weight-zero pairs are left out; unequal weights shrink Kish's count.
    (_, _), n_eff, _ = sign_error_interval([0, 1, 0], [1.0, 0.0, 0.5], ["a", "b", "c"])
    assert n_eff == pytest.approx(1.5**2 / 1.25)
    assert sign_error_interval([1, 0], [0.0, 0.0], ["a", "b"]) is None


# --- coverage ----------------------------------------------------------------------------------

# The two committed shapes: quick has 3 natural runs with 2 twins each; standard has 27 natural
# runs with 6 twins each, 18 of which (the MLPs' shuffled pixels) have weight 0.
SHAPES = {"quick": (3, 2, 0), "standard": (27, 6, 18)}
# The pairs of a natural run are correlated: each natural run draws its own error rate from a
# Beta with mean p and intra-cluster correlation ICC. The ANOVA estimates on reports/standard
# have median 0.05; 0.1 is above every low-sign-error measure there but two.
ICC = 0.1
TRUE_SIGN_ERRORS = (0.0, 0.05, 0.1, 0.3, 0.5)
BOARDS = 1000


def simulate(shape: str, p: float, rng: np.random.Generator):
    n_clusters, per, zero_weight = SHAPES[shape]
    kappa = 1 / ICC - 1
    if 0 < p < 1:
        rates = rng.beta(p * kappa, (1 - p) * kappa, size=n_clusters)
    else:
        rates = np.full(n_clusters, p)
    losses = (rng.random((n_clusters, per)) < rates[:, None]).astype(float).ravel()
    weights = rng.uniform(0.3, 0.5, size=n_clusters * per)
    weights[: zero_weight * per : per] = 0.0  # the first twin of the first clusters: unresolved gaps
    clusters = np.repeat(np.arange(n_clusters), per)
    return losses, weights, clusters


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_coverage_is_at_least_93_percent_at_every_true_sign_error(shape):
    rng = np.random.default_rng(20261207)
    for p in TRUE_SIGN_ERRORS:
        covered, widths = 0, []
        for _ in range(BOARDS):
            losses, weights, clusters = simulate(shape, p, rng)
            (lo, hi), _, _ = sign_error_interval(losses, weights, clusters)
            covered += lo <= p <= hi
            widths.append(hi - lo)
        coverage = covered / BOARDS
        print(f"{shape} p={p}: coverage {coverage:.3f}, mean width {np.mean(widths):.3f}")
        assert coverage >= 0.93, (shape, p, coverage)
