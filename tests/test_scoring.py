"""Scoring on hand-made value tables whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gentest.leaderboard import MeasureScore
from gentest.scoring import (
    THRESHOLDS,
    ScoredRun,
    controls_ok,
    environment_of,
    pair_runs,
    score_all,
    score_measure,
)

ENV = "mnist1d/mlp/h0"


def run(key, pair_key, randomization="none", p=None, seed=0, gap=0.0, environment=ENV) -> ScoredRun:
    if p is None:
        p = 0.0 if randomization == "none" else 1.0
    return ScoredRun(key, pair_key, randomization, p, seed, gap, environment)


def suite(seeds=(0, 1, 2), kinds=(("labels", 1.0),), envs=(ENV,)) -> list[ScoredRun]:
    """For each environment and seed: one natural run and one run per randomized kind.

    Natural gaps are small, randomized ones large, and all distinct.
    """
    runs = []
    for e, env in enumerate(envs):
        for s in seeds:
            pk = f"{env}/s{s}"
            runs.append(run(f"{pk}/none", pk, seed=s, gap=0.05 + 0.01 * s + 0.001 * e, environment=env))
            for k, (kind, p) in enumerate(kinds):
                gap = 0.5 + 0.3 * p + 0.02 * k + 0.01 * s + 0.001 * e
                runs.append(run(f"{pk}/{kind}{p:g}", pk, kind, p, s, gap, env))
    return runs


def score(runs, values, orientation="higher-worse", name="m", **kw) -> MeasureScore:
    return score_measure(name, "test", orientation, runs, values, **kw)


def gap_values(runs):
    return {r.key: r.gap for r in runs}


def brute_auroc(runs, values, sign=1.0):
    pos = [sign * values[r.key] for r in runs if r.randomization != "none" and values.get(r.key) is not None]
    neg = [sign * values[r.key] for r in runs if r.randomization == "none" and values.get(r.key) is not None]
    total = 0.0
    for a in pos:
        for b in neg:
            total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(pos) * len(neg))


def tau_a(xs, ys):
    """Jiang et al.'s tau (anchors.md section 4), written out as the double sum."""
    n = len(xs)
    s = 0
    for i in range(n):
        for j in range(n):
            if i != j:
                s += np.sign(xs[i] - xs[j]) * np.sign(ys[i] - ys[j])
    return s / (n * (n - 1))


# --- perfect, inverted and constant measures ---------------------------------------------


# 40 independent pairs: the fewest for which a clean record's Clopper–Pearson interval, whose upper
# end is 1 − 0.025^(1/n) with no error, falls under 0.1 (n >= 36).
MANY = tuple(range(40))


def cp(x, n):
    """Clopper–Pearson at level 0.95 in its Beta form, for a check by hand."""
    lo = 0.0 if x == 0 else stats.beta.ppf(0.025, x, n - x + 1)
    hi = 1.0 if x == n else stats.beta.ppf(0.975, x + 1, n - x)
    return lo, hi


def test_perfect_measure_separates():
    runs = suite(seeds=MANY)
    sc = score(runs, gap_values(runs))
    assert sc.n_pairs == 40
    assert sc.sign_error == 0
    assert sc.auroc == 1
    assert sc.sign_error_ci == pytest.approx(cp(0, 40)) and cp(0, 40)[1] < 0.1
    assert sc.verdict == "separates"
    assert sc.worst_env_sign_error == 0
    assert sc.worst_env == f"{ENV}/labels(p=1)"
    assert sc.env_sign_errors == {f"{ENV}/labels(p=1)": 0.0}
    assert sc.errors == 0 and sc.n_ties == 0
    assert sc.reason == "orders 40 of 40 pairs like the gap"


def test_three_perfect_pairs_are_too_few_to_separate():
    runs = suite()
    sc = score(runs, gap_values(runs))
    assert sc.sign_error == 0 and sc.n_pairs == 3
    assert sc.sign_error_ci == pytest.approx(cp(0, 3))
    assert sc.verdict == "inconclusive" and sc.reason.endswith("reaches 0.1: add pairs")


def test_negated_measure_inverts_and_orientation_flips_it_back():
    runs = suite(seeds=MANY)
    neg = {k: -v for k, v in gap_values(runs).items()}
    inv = score(runs, neg)
    assert inv.sign_error == 1
    assert inv.auroc == 0
    assert inv.verdict == "inverts"
    assert inv.worst_env_sign_error == 1
    assert inv.reason == "inverts 40 of 40 pairs"
    ok = score(runs, neg, orientation="higher-better")
    assert ok.sign_error == 0 and ok.auroc == 1 and ok.verdict == "separates"
    assert ok.orientation == "higher-better"


def test_constant_measure_ties_every_pair():
    runs = suite(seeds=MANY)
    sc = score(runs, {r.key: 7.0 for r in runs})
    assert sc.sign_error == 0.5
    assert sc.n_ties == sc.n_pairs == 40
    assert sc.auroc == 0.5
    assert sc.verdict == "chance"
    assert sc.reason == "ties every pair (40 of 40)"
    # 40 ties are 20 of 40 "errors"; every loss is ½, so no clustering shows (design effect 1).
    assert sc.sign_error_ci == pytest.approx(cp(20, 40)) and sc.auroc_ci == (0.5, 0.5)
    # Three ties: the interval [0.04, 0.96] reaches both thresholds.
    few = score(suite(), {r.key: 7.0 for r in suite()})
    assert few.sign_error_ci == pytest.approx(cp(1.5, 3)) and few.verdict == "inconclusive"


def test_ties_are_exact_not_approximate():
    runs = suite(seeds=(0,))
    nat, rnd = runs
    sc = score(runs, {nat.key: 1.0, rnd.key: 1.0 + 1e-15})
    assert sc.n_ties == 0 and sc.sign_error == 0


def test_unknown_orientation_is_rejected():
    with pytest.raises(ValueError, match="orientation"):
        score(suite(), {}, orientation="lower-better")


# --- a hand-computed mixed case ----------------------------------------------------------


def test_mixed_case_by_hand():
    # Two seeds; each pair group has a natural run, a labels(p=1) twin and a gaussian twin:
    # 4 pairs in 2 environments. The measure orders the labels pairs right, the gaussian pair
    # of seed 0 right and the gaussian pair of seed 1 wrong.
    runs = suite(seeds=(0, 1), kinds=(("labels", 1.0), ("gaussian", 1.0)))
    values = gap_values(runs)
    values[f"{ENV}/s1/gaussian1"] = 0.0  # below its natural twin's 0.06
    sc = score(runs, values)
    assert sc.n_pairs == 4
    assert sc.sign_error == 0.25
    assert sc.env_sign_errors == {f"{ENV}/gaussian": 0.5, f"{ENV}/labels(p=1)": 0.0}
    # Two pairs per environment are far under the effective sample of 12 the worst case needs.
    assert sc.worst_env is None and sc.worst_env_sign_error is None
    assert sc.envs_left_out == [f"{ENV}/gaussian", f"{ENV}/labels(p=1)"]
    assert sc.worst_env_any == f"{ENV}/gaussian" and sc.worst_env_any_sign_error == 0.5
    # AUROC: randomized values {0.82, 0.83, 0.84, 0.0} vs natural {0.05, 0.06}: 6 of 8 above.
    assert sc.auroc == 6 / 8
    # Natural run of seed 0: losses (0, 0); of seed 1: (0, 1). ANOVA: grand mean ¼, MSB =
    # 2·(1/16 + 1/16) = ¼, MSW = (0 + ½)/2 = ¼, so ρ = 0 and the design effect is 1: 1 of 4.
    assert sc.design_effect == 1.0 and sc.n_effective == 4.0
    assert sc.sign_error_ci == pytest.approx(cp(1, 4))
    assert sc.verdict == "inconclusive"
    assert sc.reason == ("orders 3 of 4 pairs like the gap, inverts 1: sign-error 0.25, but its 95 % interval "
                         "[0.01, 0.81] from 4.0 effective pairs reaches 0.1: add pairs")


def test_tie_counts_half_and_a_gap_tie_is_left_out():
    runs = suite(seeds=(0, 1, 2, 3))
    values = gap_values(runs)
    values[f"{ENV}/s0/labels1"] = values[f"{ENV}/s0/none"]  # a tie in the measure
    sc = score(runs, values)
    assert sc.n_ties == 1 and sc.sign_error == 0.5 / 4
    # Four singleton clusters, losses ½, 0, 0, 0: half an error in four pairs.
    assert sc.sign_error_ci == pytest.approx(cp(0.5, 4))
    assert sc.verdict == "inconclusive" and sc.reason.endswith("add pairs")

    # Equal gaps with different measure values: nothing to order, so the pair is left out.
    eq = [run("n", "g", gap=0.3), run("r", "g", "labels", gap=0.3)]
    sc = score(eq, {"n": 1.0, "r": 2.0})
    assert sc.n_pairs == 0 and sc.sign_error is None and sc.n_gap_ties == 1 and sc.n_ties == 0
    assert sc.verdict == "error" and "every pair has equal gaps" in sc.reason


def test_a_pair_with_equal_gaps_is_left_out_for_every_measure():
    # Three seeds; seed 1's twins happen to have equal gaps. By hand: the two other pairs are
    # ordered right by "right" (sign-error 0 over 2 pairs) and inverted by "wrong" (1 over 2);
    # a measure that ties seed 1 is not charged a tie there either.
    runs = suite()
    runs[3] = run(runs[3].key, runs[3].pair_key, "labels", seed=1, gap=runs[2].gap)
    right = gap_values(runs)
    wrong = {k: -v for k, v in right.items()}
    for values, expected in ((right, 0.0), (wrong, 1.0)):
        sc = score(runs, values)
        assert (sc.n_pairs, sc.n_gap_ties, sc.sign_error, sc.n_seeds) == (2, 1, expected, 2)
        assert "1 pair with equal gaps left out" in sc.reason and sc.gap_tied_envs == []
    tied_there = {**right, runs[3].key: right[runs[2].key]}
    assert score(runs, tied_there).n_ties == 0


def test_thresholds():
    assert THRESHOLDS == {"separates_max_sign_error": 0.1, "inverts_min_sign_error": 0.9, "chance_sign_error": 0.5,
                          "min_seeds": 2, "undecided_z": 2.0, "min_env_ess": 12.0}
    # 400 independent pairs, 4 wrong: the interval [0.003, 0.025] lies under 0.1.
    runs = suite(seeds=range(400))
    values = gap_values(runs)
    for s in range(4):
        values[f"{ENV}/s{s}/labels1"] = -1.0
    sc = score(runs, values)
    assert sc.sign_error == 0.01 and sc.sign_error_ci == pytest.approx(cp(4, 400)) and sc.verdict == "separates"
    assert sc.reason == "orders 396 of 400 pairs like the gap, inverts 4"
    neg = score(runs, {k: -v for k, v in values.items()})
    assert neg.sign_error == 0.99 and neg.verdict == "inverts"
    assert neg.reason == "inverts 396 of 400 pairs, orders 4 like the gap"
    # The AUROC's bootstrap is optional; the sign-error's interval is not a bootstrap.
    none = score(runs, values, n_boot=0)
    assert none.auroc_ci is None and none.sign_error_ci == sc.sign_error_ci and none.verdict == "separates"


# --- AUROC --------------------------------------------------------------------------------


@pytest.mark.parametrize("table_seed", range(5))
def test_auroc_matches_brute_force_with_ties(table_seed):
    rng = np.random.default_rng(table_seed)
    runs = suite(seeds=range(4), kinds=(("labels", 0.5), ("labels", 1.0), ("random-pixels", 1.0)))
    values = {r.key: float(rng.integers(0, 4)) for r in runs}  # few distinct values: many ties
    values[runs[int(rng.integers(len(runs)))].key] = None
    for orientation, sign in (("higher-worse", 1.0), ("higher-better", -1.0)):
        sc = score(runs, values, orientation=orientation, n_boot=0)
        assert sc.auroc == pytest.approx(brute_auroc(runs, values, sign), abs=1e-12)
    pos = [values[r.key] for r in runs if r.randomization != "none" and values[r.key] is not None]
    neg = [values[r.key] for r in runs if r.randomization == "none" and values[r.key] is not None]
    u = stats.mannwhitneyu(pos, neg).statistic
    assert score(runs, values, n_boot=0).auroc == pytest.approx(u / (len(pos) * len(neg)), abs=1e-12)


def test_auroc_none_without_both_classes():
    runs = suite()
    only_natural = {r.key: (1.0 if r.randomization == "none" else None) for r in runs}
    sc = score(runs, only_natural)
    assert sc.auroc is None and sc.auroc_ci is None
    assert sc.n_pairs == 0 and sc.sign_error is None and sc.worst_env is None
    assert sc.verdict == "error"


# --- Kendall tau ---------------------------------------------------------------------------


def test_kendall_tau_none_without_a_sweep():
    runs = suite(kinds=(("labels", 1.0), ("gaussian", 1.0)))  # p in {0, 1} only
    assert score(runs, gap_values(runs)).kendall_tau is None


def test_kendall_tau_is_scipy_tau_b_over_the_sweep():
    rng = np.random.default_rng(3)
    runs = suite(seeds=range(3), kinds=(("labels", 0.5), ("labels", 1.0), ("gaussian", 1.0)))
    values = {r.key: float(rng.integers(0, 5)) for r in runs}  # ties in the measure
    swept = [r for r in runs if r.randomization in ("none", "labels")]
    expected = stats.kendalltau([values[r.key] for r in swept], [r.gap for r in swept]).statistic
    assert score(runs, values).kendall_tau == pytest.approx(expected, abs=1e-12)
    flipped = score(runs, values, orientation="higher-better").kendall_tau
    assert flipped == pytest.approx(-expected, abs=1e-12)


def test_kendall_tau_by_hand_equals_tau_a_without_ties():
    runs = [
        run("a", "g", "none", 0.0, gap=0.1),
        run("b", "g", "labels", 0.5, gap=0.4),
        run("c", "g", "labels", 1.0, gap=0.9),
    ]
    values = {"a": 1.0, "b": 3.0, "c": 2.0}
    # (a,b): concordant, (a,c): concordant, (b,c): discordant -> (2 - 1) / 3.
    assert tau_a([1.0, 3.0, 2.0], [0.1, 0.4, 0.9]) == pytest.approx(1 / 3)
    assert score(runs, values).kendall_tau == pytest.approx(1 / 3, abs=1e-12)


def test_kendall_tau_undefined_for_a_constant_measure():
    runs = suite(kinds=(("labels", 0.5), ("labels", 1.0)))
    assert score(runs, {r.key: 1.0 for r in runs}).kendall_tau is None


# --- errors ---------------------------------------------------------------------------------


def test_one_errored_run():
    runs = suite(seeds=(0, 1, 2), kinds=(("labels", 1.0), ("gaussian", 1.0)))
    values = gap_values(runs)
    values[f"{ENV}/s1/none"] = None  # its two pairs cannot be scored
    sc = score(runs, values)
    assert sc.errors == 1
    assert sc.n_pairs == 4
    assert sc.sign_error == 0  # still reported over the pairs that could be scored
    assert sc.verdict == "error"
    assert sc.reason == "errored on 1 of 9 runs"


def test_nan_and_missing_values_count_as_errors():
    runs = suite()
    values = gap_values(runs)
    values[runs[0].key] = float("nan")
    del values[runs[1].key]
    sc = score(runs, values)
    assert sc.errors == 2 and sc.n_pairs == 2 and sc.verdict == "error"


def test_infinite_values_order_and_tie():
    runs = suite(seeds=(0, 1))
    n0, r0, n1, r1 = runs
    sc = score(runs, {n0.key: 1.0, r0.key: math.inf, n1.key: math.inf, r1.key: math.inf})
    assert sc.sign_error == 0.25 and sc.n_ties == 1 and sc.errors == 0


def test_every_run_errored():
    runs = suite()
    sc = score(runs, {})
    assert sc.errors == 6 and sc.n_pairs == 0 and sc.sign_error is None
    assert sc.verdict == "error"
    assert sc.reason == "errored on 6 of 6 runs; no pair could be scored"
    assert sc.sign_error_ci is None and sc.auroc_ci is None and sc.kendall_tau is None


# --- bootstrap ---------------------------------------------------------------------------


def noisy_table(n_seeds=6):
    rng = np.random.default_rng(11)
    runs = suite(seeds=range(n_seeds), kinds=(("labels", 1.0), ("shuffled-pixels", 1.0)))
    values = {r.key: 0.5 * r.gap + float(rng.normal(0, 1.0)) for r in runs}
    return runs, values


def test_bootstrap_is_deterministic_and_contains_the_estimate():
    runs, values = noisy_table()
    a = score(runs, values, seed=5)
    b = score(runs, values, seed=5)
    assert a.sign_error_ci == b.sign_error_ci and a.auroc_ci == b.auroc_ci
    assert 0 < a.sign_error < 1  # really noisy
    lo, hi = a.sign_error_ci
    assert lo <= a.sign_error <= hi and lo < hi
    assert score(runs, values, seed=6).sign_error_ci == a.sign_error_ci  # not a resampling: no seed
    lo, hi = a.auroc_ci
    assert lo <= a.auroc <= hi and lo < hi
    c = score(runs, values, seed=6)
    assert c.sign_error == a.sign_error  # the point estimate does not depend on the seed


def test_bootstrap_leaves_the_global_rng_alone():
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    runs, values = noisy_table()
    score(runs, values)
    assert np.random.random() == before


def test_bootstrap_with_one_seed_is_degenerate():
    runs, values = noisy_table()
    one = [r for r in runs if r.seed == 0]
    sc = score(one, values)
    assert sc.auroc_ci == (sc.auroc, sc.auroc)
    # One natural run with two twins is one cluster: it counts as one effective pair.
    assert sc.n_effective == pytest.approx(1.0) and sc.verdict == "inconclusive"



def test_different_pair_keys_are_never_paired():
    runs = [run("n", "A", gap=0.1), run("r", "B", "labels", gap=0.9)]
    assert pair_runs(runs) == []
    sc = score(runs, {"n": 0.0, "r": 1.0})
    assert sc.n_pairs == 0 and sc.verdict == "error"
    assert sc.reason == "no natural/randomized pair to score"
    assert sc.auroc == 1  # AUROC does not need pairs


def test_two_randomized_kinds_both_pair_with_the_natural_run():
    runs = [
        run("n", "A", gap=0.1),
        run("l", "A", "labels", 0.25, gap=0.4),
        run("s", "A", "shuffled-pixels", gap=0.7),
        run("other", "B", gap=0.2),
    ]
    pairs = {(n.key, r.key) for n, r in pair_runs(runs)}
    assert pairs == {("n", "l"), ("n", "s")}
    sc = score(runs, {"n": 0.0, "l": 1.0, "s": 2.0, "other": 5.0})
    assert sc.n_pairs == 2
    assert set(sc.env_sign_errors) == {f"{ENV}/labels(p=0.25)", f"{ENV}/shuffled-pixels"}
    assert environment_of(runs[0], runs[1]) == f"{ENV}/labels(p=0.25)"


# --- score_all and controls ----------------------------------------------------------------


def controls_table(runs, param_count_differs=False):
    values = {
        "control.gap": gap_values(runs),
        "control.param_count": {r.key: 1000.0 for r in runs},
    }
    if param_count_differs:
        values["control.param_count"][runs[1].key] = 2000.0
    return values


def test_score_all_sorts_by_verdict_then_sign_error_then_name():
    runs, noisy = noisy_table(n_seeds=40)
    values = controls_table(runs)
    values["good"] = gap_values(runs)
    values["bad"] = {k: -v for k, v in gap_values(runs).items()}
    values["noisy"] = noisy
    values["broken"] = {r.key: None for r in runs}
    names = ("noisy", "broken", "bad", "control.param_count", "good", "control.gap")
    measures = [(n, "f", "higher-worse") for n in names]
    scores = score_all(measures, runs, values, n_boot=50)
    assert [s.name for s in scores] == ["control.gap", "good", "bad", "noisy", "control.param_count", "broken"]
    assert [s.verdict for s in scores] == ["separates", "separates", "inverts", "chance", "chance", "error"]
    assert score_all([("absent", "f", "higher-worse")], runs, values)[0].errors == len(runs)


def test_controls_ok_on_proper_controls():
    runs = suite()
    measures = [("control.gap", "control", "higher-worse"), ("control.param_count", "control", "higher-worse")]
    assert controls_ok(score_all(measures, runs, controls_table(runs))) == (True, "")


def test_controls_fail_when_gap_control_is_missing():
    runs = suite()
    scores = score_all([("control.param_count", "control", "higher-worse")], runs, controls_table(runs))
    ok, msg = controls_ok(scores)
    assert not ok
    assert "control.gap was not evaluated" in msg and "\n" not in msg


def test_controls_fail_when_param_count_varies_between_twins():
    runs = suite()
    measures = [("control.gap", "control", "higher-worse"), ("control.param_count", "control", "higher-worse")]
    ok, msg = controls_ok(score_all(measures, runs, controls_table(runs, param_count_differs=True)))
    assert not ok
    assert msg.startswith("control.param_count differs between twins in 1 of 3 pairs")
    assert "the suite, not the measures, is broken" in msg and "\n" not in msg


def test_one_pair_with_equal_gaps_is_chance_not_a_broken_suite():
    runs = suite()
    runs[1] = run(runs[1].key, runs[1].pair_key, "labels", seed=0, gap=runs[0].gap)
    measures = [("control.gap", "control", "higher-worse"), ("control.param_count", "control", "higher-worse")]
    scores = score_all(measures, runs, controls_table(runs))
    assert controls_ok(scores) == (True, "")
    gap = next(s for s in scores if s.name == "control.gap")
    assert (gap.sign_error, gap.n_pairs, gap.n_gap_ties) == (0.0, 2, 1)


def test_controls_fail_when_every_pair_of_an_environment_has_equal_gaps():
    runs = suite(envs=("e1", "e2"))
    for i, r in enumerate(runs):  # every e2 twin generalizes exactly like its natural run
        if r.environment == "e2" and r.randomization != "none":
            runs[i] = run(r.key, r.pair_key, r.randomization, r.p, r.seed, runs[i - 1].gap, r.environment)
    measures = [("control.gap", "control", "higher-worse"), ("control.param_count", "control", "higher-worse")]
    ok, msg = controls_ok(score_all(measures, runs, controls_table(runs)))
    assert not ok
    assert msg.startswith("every pair of e2/labels(p=1) has equal gaps (does its randomization change the data?)")
    assert msg.endswith("the suite, not the measures, is broken.")


def test_not_applicable_runs_are_left_out_and_all_not_applicable_is_na():
    runs = [
        ScoredRun("n0", "a", "none", 0.0, 0, 0.2, "e"), ScoredRun("r0", "a", "labels", 1.0, 0, 0.9, "e"),
        ScoredRun("n1", "b", "none", 0.0, 1, 0.3, "e"), ScoredRun("r1", "b", "labels", 1.0, 1, 0.8, "e"),
    ]
    values = {"n0": 1.0, "r0": 2.0, "n1": None, "r1": None}
    na = {"n1": "needs BackPACK", "r1": "needs BackPACK"}
    s = score_measure("m", "f", "higher-worse", runs, values, n_boot=0, not_applicable=na)
    assert s.errors == 0 and s.n_pairs == 1 and s.sign_error == 0 and "does not apply to 2 of 4 runs" in s.reason
    s = score_measure("m", "f", "higher-worse", runs, {}, n_boot=0, not_applicable={r.key: "no BN" for r in runs})
    assert s.verdict == "n/a" and s.reason == "does not apply: no BN" and s.errors == 0
