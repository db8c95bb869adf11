"""Dziugaite et al.'s weighted pairs, effective sample sizes, the worst case over the environments
that reach the threshold, and the verdicts that carry the gradient: each against a hand
computation or a closed form written out here."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from gentest.scoring import (
    CHANCE,
    INCONCLUSIVE,
    INVERTS,
    SEPARATES,
    THRESHOLDS,
    UNRELIABLE,
    ScoredRun,
    claims_contradict,
    consistent_with,
    pair_weights,
    score_measure,
)
from gentest.scoring.weights import effective_sample_size, hoeffding_confidence, pair_weight, resolvable_gap


def psi_dziugaite(dg: float, n: int) -> float:
    """Their ψ_H(|Δg|) = max(0, 1 − 2·exp(−2n(Δg/2)²))², as printed (one test-set size)."""
    return max(0.0, 1 - 2 * math.exp(-2 * n * (dg / 2) ** 2)) ** 2


def test_weight_is_dziugaites_at_one_test_set_size():
    for dg in (0.05, 0.062, 0.07, 0.1, 0.3, 0.9):
        assert hoeffding_confidence(dg, 1000, 1000) == pytest.approx(psi_dziugaite(dg, 1000), rel=1e-12)
        assert pair_weight(0.1, 0.1 + dg, 1000, 1000) == pytest.approx(max(0.0, psi_dziugaite(dg, 1000) - 0.5), abs=1e-12)
    # Large gap differences weigh (almost) the maximum, ½.
    assert pair_weight(0.0, 0.8, 1000, 1000) == pytest.approx(0.5, abs=1e-12)


def test_the_resolvable_gap_is_where_the_weight_turns_positive():
    # The numbers: 0.062 at 1,000 test points, 0.02 at 10,000.
    assert resolvable_gap(1000) == pytest.approx(0.062, abs=5e-4)
    assert resolvable_gap(10_000) == pytest.approx(0.0196, abs=5e-4)
    x = resolvable_gap(1000)
    assert psi_dziugaite(x, 1000) == pytest.approx(0.5, abs=1e-9)
    assert pair_weight(0.0, x * 0.999, 1000, 1000) == 0.0
    assert pair_weight(0.0, x * 1.01, 1000, 1000) > 0.0


def test_two_test_set_sizes_multiply_their_factors():
    dg, n1, n2 = 0.1, 400, 1000
    expected = (1 - 2 * math.exp(-2 * n1 * 0.05**2)) * (1 - 2 * math.exp(-2 * n2 * 0.05**2))
    assert hoeffding_confidence(dg, n1, n2) == pytest.approx(expected, rel=1e-12)
    # A smaller test set can only lower the confidence.
    assert hoeffding_confidence(dg, n1, n2) < hoeffding_confidence(dg, n2, n2)


def test_without_a_test_set_size_the_weight_is_the_old_indicator():
    assert pair_weight(0.1, 0.2, None, 1000) == 1.0
    assert pair_weight(0.1, 0.1, None, None) == 0.0


def test_effective_sample_size_by_hand():
    assert effective_sample_size([1, 1, 1, 1]) == 4
    assert effective_sample_size([0.5, 0.5, 0.0]) == 2
    assert effective_sample_size([1, 0.5]) == pytest.approx(1.5**2 / 1.25)
    assert effective_sample_size([]) == 0 and effective_sample_size([0, 0]) == 0


# --- the weighted sign-error ---------------------------------------------------------------------

N = 1000


def run(key, pk, randomization="none", seed=0, gap=0.0, env="e", n_test=N) -> ScoredRun:
    p = 0.0 if randomization == "none" else 1.0
    return ScoredRun(key, pk, randomization, p, seed, gap, env, (), n_test)


def test_weighted_sign_error_by_hand():
    # Three seeds; each natural run has two twins: random labels (large Δg, weight ≈ ½) and
    # shuffled pixels (Δg 0.03 < 0.062: weight 0) and a third, random pixels, with Δg 0.07
    # (a small positive weight). The measure gets random labels right, shuffled pixels wrong,
    # random pixels wrong.
    runs, values = [], {}
    for s in range(3):
        pk = f"s{s}"
        runs += [run(f"{pk}/n", pk, seed=s, gap=0.30), run(f"{pk}/l", pk, "labels", s, 0.80),
                 run(f"{pk}/sp", pk, "shuffled-pixels", s, 0.33), run(f"{pk}/rp", pk, "random-pixels", s, 0.37)]
        values |= {f"{pk}/n": 1.0, f"{pk}/l": 2.0, f"{pk}/sp": 0.5, f"{pk}/rp": 0.5}
    sc = score_measure("m", "t", "higher-worse", runs, values)
    w_l = max(0.0, psi_dziugaite(0.5, N) - 0.5)
    w_rp = max(0.0, psi_dziugaite(0.07, N) - 0.5)
    assert 0 < w_rp < w_l and max(0.0, psi_dziugaite(0.03, N) - 0.5) == 0
    expected = (3 * w_l * 0 + 3 * w_rp * 1) / (3 * w_l + 3 * w_rp)
    assert sc.sign_error == pytest.approx(expected, rel=1e-12)
    assert sc.sign_error_unweighted == pytest.approx(6 / 9)  # every pair with different gaps counts 1
    assert sc.n_pairs == 6 and sc.n_unresolved == 3
    assert "3 pairs with gaps closer than the test sets resolve left out" in sc.reason
    # Per environment: shuffled pixels has no weight, so it is not an environment of the score.
    assert set(sc.env_sign_errors) == {"e/labels(p=1)", "e/random-pixels"}
    assert sc.env_sign_errors["e/random-pixels"] == 1.0
    assert sc.env_ess["e/labels(p=1)"] == pytest.approx(3.0)
    # Every environment is under 12 effective pairs: none enters the worst case.
    assert sc.worst_env_sign_error is None and sc.worst_env is None
    assert sorted(sc.envs_left_out) == ["e/labels(p=1)", "e/random-pixels"]
    assert sc.worst_env_any == "e/random-pixels" and sc.worst_env_any_sign_error == 1.0


def test_pair_weights_are_listed_once_per_pair():
    runs = [run("n", "a", gap=0.1), run("r", "a", "labels", gap=0.6), run("q", "a", "shuffled-pixels", gap=0.12)]
    rows = pair_weights(runs)
    assert [(r["natural"], r["randomized"]) for r in rows] == [("n", "r"), ("n", "q")]
    assert rows[0]["delta_gap"] == pytest.approx(0.5) and rows[0]["weight"] == pytest.approx(pair_weight(0.1, 0.6, N, N))
    assert rows[1]["weight"] == 0.0


def test_worst_case_uses_only_environments_that_reach_the_threshold():
    assert THRESHOLDS["min_env_ess"] == 12
    # Environment "big" has 4 seeds x 4 pairs (ESS 16), "small" 2 x 2 (ESS 4). The measure is
    # right everywhere in "big" and wrong everywhere in "small".
    runs, values = [], {}
    for env, seeds, per in (("big", 4, 4), ("small", 2, 2)):
        for s in range(seeds):
            pk = f"{env}/s{s}"
            runs.append(run(f"{pk}/n", pk, seed=s, gap=0.1, env=env))
            values[f"{pk}/n"] = 1.0
            for j in range(per):
                runs.append(run(f"{pk}/r{j}", pk, "labels", s, 0.8 + 0.001 * j, env))
                values[f"{pk}/r{j}"] = 2.0 if env == "big" else 0.0
    sc = score_measure("m", "t", "higher-worse", runs, values)
    assert sc.env_ess["big/labels(p=1)"] == pytest.approx(16, rel=1e-3)
    assert sc.env_ess["small/labels(p=1)"] == pytest.approx(4, rel=1e-3)
    assert sc.worst_env == "big/labels(p=1)" and sc.worst_env_sign_error == 0.0
    assert sc.envs_left_out == ["small/labels(p=1)"]
    assert sc.worst_env_any == "small/labels(p=1)" and sc.worst_env_any_sign_error == 1.0
    assert sc.env_quantiles == {"mean": 0.0, "p90": 0.0, "max": 0.0}


# --- the interval and the verdicts ---------------------------------------------------------------

def exact_interval(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return ci.low, ci.high


@pytest.mark.parametrize("wrong, verdict", [(0, SEPARATES), (40, UNRELIABLE), (100, CHANCE), (130, CHANCE), (200, INVERTS)])
def test_verdicts_from_clopper_pearson_on_independent_pairs(wrong, verdict):
    # 200 natural runs (seeds) with one twin each: no clustering, equal weights, so the interval
    # is the exact binomial one on 200 trials.
    runs, values = [], {}
    for s in range(200):
        runs += [run(f"{s}/n", f"{s}", seed=s, gap=0.1), run(f"{s}/r", f"{s}", "labels", s, 0.9)]
        values |= {f"{s}/n": 1.0, f"{s}/r": 0.0 if s < wrong else 2.0}
    sc = score_measure("m", "t", "higher-worse", runs, values)
    assert sc.sign_error == pytest.approx(wrong / 200)
    assert sc.n_effective == pytest.approx(200) and sc.design_effect == pytest.approx(1.0)
    lo, hi = exact_interval(wrong, 200)
    assert sc.sign_error_ci == pytest.approx((lo, hi), abs=1e-9)
    assert sc.verdict == verdict


def test_too_few_pairs_cannot_separate_and_check_sees_agreement():
    # Six pairs over three seeds, all right: the interval reaches 0.46, so inconclusive.
    runs, values = [], {}
    for s in range(3):
        runs += [run(f"{s}/n", f"{s}", seed=s, gap=0.1), run(f"{s}/a", f"{s}", "labels", s, 0.9),
                 run(f"{s}/b", f"{s}", "random-pixels", s, 0.8)]
        values |= {f"{s}/n": 1.0, f"{s}/a": 2.0, f"{s}/b": 3.0}
    sc = score_measure("m", "t", "higher-worse", runs, values)
    assert sc.verdict == INCONCLUSIVE and sc.sign_error == 0
    assert sc.sign_error_ci == pytest.approx(exact_interval(0, 6), abs=1e-9)
    assert consistent_with(SEPARATES, sc.sign_error, sc.sign_error_ci)
    assert not consistent_with(INVERTS, sc.sign_error, sc.sign_error_ci)
    assert not consistent_with(CHANCE, sc.sign_error, sc.sign_error_ci)


def test_consistency_needs_the_point_estimate_in_the_claimed_range():
    assert not consistent_with(SEPARATES, 0.5, (0.1, 0.9))
    assert consistent_with(INVERTS, 1.0, (0.54, 1.0))
    assert consistent_with(UNRELIABLE, 0.3, (0.05, 0.7))
    assert not consistent_with(UNRELIABLE, 0.5, (0.2, 0.8))
    assert consistent_with(CHANCE, 0.5, (0.12, 0.88))
    assert not consistent_with(CHANCE, 0.3, (0.2, 0.45))  # its interval excludes 0.5


def test_which_verdicts_contradict():
    pairs = {(a, b): claims_contradict(a, b) for a in (SEPARATES, UNRELIABLE, CHANCE, INVERTS, "fails")
             for b in (SEPARATES, UNRELIABLE, CHANCE, INVERTS, "fails")}
    assert pairs[(SEPARATES, UNRELIABLE)] and pairs[(SEPARATES, CHANCE)] and pairs[(SEPARATES, INVERTS)]
    assert pairs[(INVERTS, UNRELIABLE)] and pairs[(INVERTS, CHANCE)] and pairs[(INVERTS, "fails")]
    assert not pairs[(UNRELIABLE, CHANCE)] and not pairs[(CHANCE, UNRELIABLE)]
    assert not pairs[("fails", UNRELIABLE)] and not pairs[("fails", CHANCE)]
    assert pairs[(SEPARATES, "fails")]
    assert not any(pairs[(v, v)] for v in (SEPARATES, UNRELIABLE, CHANCE, INVERTS))
    assert not claims_contradict(SEPARATES, INCONCLUSIVE) and not claims_contradict("error", SEPARATES)
