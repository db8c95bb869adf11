"""Verdicts honest about their sample, undecided pairs, Kendall τ per environment and Jiang's Ψ,
on hand-made tables whose answers are computed by hand."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from gentest.leaderboard import MeasureValue
from gentest.scoring import (
    ScoredRun,
    controls_ok,
    granulated_consistency,
    kendall_tau_a,
    recorded_uncertainty,
    score_all,
    score_measure,
    suite_axes,
)

ENV = "e"


def run(key, pair_key, randomization="none", p=None, seed=0, gap=0.0, environment=ENV, settings=()) -> ScoredRun:
    if p is None:
        p = 0.0 if randomization == "none" else 1.0
    return ScoredRun(key, pair_key, randomization, p, seed, gap, environment, tuple(settings))


def twins(n_envs, seeds, wrong=()):
    """One natural/random-labels pair per environment and seed, natural gap 0.1, randomized 0.9.

    Values follow the gap, except the pairs in ``wrong`` (``(env index, seed)``), inverted.
    """
    runs, values = [], {}
    for e in range(n_envs):
        for s in seeds:
            pk = f"e{e}/s{s}"
            nat, rnd = run(f"{pk}/n", pk, seed=s, gap=0.1, environment=f"e{e}"), run(f"{pk}/r", pk, "labels", seed=s, gap=0.9, environment=f"e{e}")
            runs += [nat, rnd]
            values[nat.key], values[rnd.key] = (2.0, 1.0) if (e, s) in wrong else (1.0, 2.0)
    return runs, values


def score(runs, values, **kw):
    return score_measure("m", "test", "higher-worse", runs, values, **kw)


# --- verdicts from the interval over seeds -----------------------------------------------------


def cp(x, n):
    """Clopper–Pearson at level 0.95 in its Beta form, for a check by hand."""
    lo = 0.0 if x == 0 else stats.beta.ppf(0.025, x, n - x + 1)
    hi = 1.0 if x == n else stats.beta.ppf(0.975, x + 1, n - x)
    return lo, hi


def test_a_point_estimate_at_the_threshold_is_not_enough():
    # Five environments, two seeds, one pair of ten wrong: the mean 0.1 would "separate" by the
    # point estimate; ten independent pairs give the interval [0.003, 0.45].
    runs, values = twins(5, (0, 1), wrong={(3, 1)})
    sc = score(runs, values)
    assert sc.sign_error == 0.1 and sc.n_seeds == 2 and sc.n_effective == 10
    assert sc.sign_error_ci == pytest.approx(cp(1, 10))
    assert sc.verdict == "inconclusive"
    assert sc.reason == ("orders 9 of 10 pairs like the gap, inverts 1: sign-error 0.10, but its 95 % interval "
                         "[0.00, 0.45] from 10.0 effective pairs reaches 0.1: add pairs")


def test_unreliable_and_chance_split_the_old_fails():
    # 30 environments, four seeds (120 independent pairs). 30 wrong: [0.18, 0.34], inside
    # (0.1, 0.5): it orders most pairs, not reliably. 60 wrong: [0.41, 0.59] reaches 0.5: chance.
    wrong_30 = {(e, s) for e in range(30) for s in range(4) if (e * 4 + s) % 4 == 0}
    sc = score(*twins(30, range(4), wrong=wrong_30))
    assert sc.sign_error == 0.25 and sc.sign_error_ci == pytest.approx(cp(30, 120))
    assert sc.verdict == "unreliable"
    assert sc.reason == ("orders 90 of 120 pairs like the gap, inverts 30: sign-error 0.25, 95 % interval [0.18, 0.34] "
                         "from 120.0 effective pairs, lies between 0.1 and 0.5")
    wrong_60 = {(e, s) for e in range(30) for s in range(4) if s < 2}
    half = score(*twins(30, range(4), wrong=wrong_60))
    assert half.sign_error == 0.5 and half.verdict == "chance"
    assert half.reason.endswith("reaches 0.5 or beyond")
    # [0.5, 0.9) counts as chance too: mostly inverted, but not reliably.
    wrong_84 = {(e, s) for e in range(30) for s in range(4) if (e * 4 + s) % 10 < 7}
    most = score(*twins(30, range(4), wrong=wrong_84))
    lo, hi = most.sign_error_ci
    assert 0.5 < lo and hi < 0.9 and most.verdict == "chance"


def test_an_interval_reaching_the_upper_threshold_is_inconclusive():
    runs, values = twins(5, (0, 1), wrong={(e, 0) for e in range(5)} | {(e, 1) for e in range(4)})
    sc = score(runs, values)
    assert sc.sign_error == 0.9 and sc.sign_error_ci == pytest.approx(cp(9, 10))
    assert sc.verdict == "inconclusive" and "reaches 0.9: add pairs" in sc.reason
    assert sc.reason.startswith("inverts 9 of 10 pairs, orders 1 like the gap")


def test_enough_agreeing_pairs_separate():
    runs, values = twins(20, (0, 1))
    sc = score(runs, values)
    assert sc.sign_error_ci == pytest.approx(cp(0, 40)) and sc.verdict == "separates"
    assert sc.reason == "orders 40 of 40 pairs like the gap"


def test_pairs_that_share_a_natural_run_count_less():
    # Ten natural runs with four twins each; the measure is wrong on every twin of runs 0 and 1
    # and right on the rest: the errors cluster, so 40 pairs carry far fewer than 40 pairs' worth.
    runs, values = [], {}
    for s in range(10):
        pk = f"s{s}"
        runs.append(run(f"{pk}/n", pk, seed=s, gap=0.1))
        values[f"{pk}/n"] = 1.0
        for j in range(4):
            runs.append(run(f"{pk}/r{j}", pk, "labels", seed=s, gap=0.9 + 0.001 * j, environment=f"e{j}"))
            values[f"{pk}/r{j}"] = 0.0 if s < 2 else 2.0
    sc = score(runs, values)
    # Each cluster is constant and the clusters differ: ρ = 1, design effect 4, 10 effective pairs.
    assert sc.design_effect == pytest.approx(4.0) and sc.n_effective == pytest.approx(10.0)
    assert sc.sign_error == 0.2 and sc.sign_error_ci == pytest.approx(cp(2, 10))


def test_one_seed_is_inconclusive_whatever_the_pairs_say():
    runs, values = twins(4, (0,))
    sc = score(runs, values)
    assert sc.sign_error == 0 and sc.n_seeds == 1
    assert sc.verdict == "inconclusive"
    assert sc.reason == ("orders 4 of 4 pairs like the gap; sign-error 0.00 from 1 seed: one trained network per "
                         "setting is not a finding: add seeds")
    tied = score(runs, {k: 3.0 for k in values})
    assert tied.verdict == "inconclusive" and tied.reason.startswith("ties every pair (4 of 4); ")


def test_controls_hold_on_one_seed():
    runs, values = twins(2, (0,))
    gap = {r.key: r.gap for r in runs}
    scores = score_all([("control.gap", "control", "higher-worse"), ("control.param_count", "control", "higher-worse")],
                       runs, {"control.gap": gap, "control.param_count": {k: 10.0 for k in gap}})
    assert [s.verdict for s in scores] == ["inconclusive", "inconclusive"]
    assert controls_ok(scores) == (True, "")


def test_controls_message_says_broken_once():
    runs, _ = twins(1, (0, 1))
    gap = {r.key: r.gap for r in runs}
    pc = {r.key: float(i) for i, r in enumerate(runs)}
    ok, msg = controls_ok(score_all([("control.gap", "c", "higher-worse"), ("control.param_count", "c", "higher-worse")],
                                    runs, {"control.gap": gap, "control.param_count": pc}))
    assert not ok and msg.count("broken") == 1 and msg.endswith("so the suite, not the measures, is broken.")


def test_score_all_orders_by_verdict_then_worst_environment_then_mean():
    # Three environments of 13 seeds each: 13 effective pairs, enough for the worst case.
    runs, good = twins(3, range(13))
    # "spread": 1 wrong pair in each of two environments -> worst env 1/13.
    _, spread = twins(3, range(13), wrong={(0, 0), (1, 1)})
    # "clumped": both wrong pairs in one environment -> worst env 2/13. Same mean, 2/39.
    _, clumped = twins(3, range(13), wrong={(0, 0), (0, 1)})
    measures = [(n, "f", "higher-worse") for n in ("clumped", "spread", "good")]
    scores = score_all(measures, runs, {"clumped": clumped, "spread": spread, "good": good})
    assert [s.name for s in scores] == ["good", "spread", "clumped"]
    assert [s.verdict for s in scores] == ["separates", "inconclusive", "inconclusive"]
    assert [s.worst_env_sign_error for s in scores] == [0.0, 1 / 13, 2 / 13]
    assert scores[1].sign_error == scores[2].sign_error == 2 / 39


# --- undecided pairs -----------------------------------------------------------------------------


def test_undecided_pair_by_hand():
    # Two seeds, one pair each, natural 1.0 vs randomized 1.25: |Δ| = 0.25.
    runs = [run("n0", "a", seed=0, gap=0.1), run("r0", "a", "labels", seed=0, gap=0.9),
            run("n1", "b", seed=1, gap=0.1), run("r1", "b", "labels", seed=1, gap=0.9)]
    values = {"n0": 1.0, "r0": 1.25, "n1": 1.0, "r1": 1.25}
    # Seed 0: u = 0 and 0.125, 2 · 0.125 = 0.25 >= 0.25 (inclusive): undecided.
    # Seed 1: u = 0.06 and 0.08, 2 · hypot = 0.2 < 0.25: decided, ordered like the gap.
    u = {"n0": 0.0, "r0": 0.125, "n1": 0.06, "r1": 0.08}
    sc = score(runs, values, uncertainties=u)
    assert sc.n_undecided == 1 and sc.n_ties == 0 and sc.n_pairs == 2
    assert sc.sign_error == 0.25  # (½ + 0) / 2
    assert sc.sign_error_ci == pytest.approx(cp(0.5, 2)) and sc.verdict == "inconclusive"
    assert "1 of 2 pairs undecided within the measures' noise" in sc.reason
    assert sc.reason.startswith("orders 1 of 2 pairs like the gap, 1 of 2 pairs undecided")
    # Without uncertainties both pairs are decided and right.
    assert score(runs, values).sign_error == 0 and score(runs, values).n_undecided == 0
    # An exact tie stays a tie, whatever the noise.
    tie = score(runs, {"n0": 1.0, "r0": 1.0, "n1": 1.0, "r1": 1.25}, uncertainties=u)
    assert tie.n_ties == 1 and tie.n_undecided == 0


def test_undecided_pairs_decide_the_verdict():
    # Every pair within the noise: sign-error ½, interval [0.12, 0.88]: "chance", not "separates".
    runs, values = twins(3, (0, 1))
    u = {k: 1.0 for k in values}
    sc = score(runs, values, uncertainties=u)
    assert sc.n_undecided == 6 and sc.sign_error == 0.5 and sc.verdict == "chance"
    assert "6 of 6 pairs undecided within the measures' noise" in sc.reason


def test_infinite_uncertainty_makes_every_difference_undecided_and_invalid_ones_are_errors():
    runs, values = twins(1, (0, 1))
    keys = list(values)
    assert score(runs, values, uncertainties={keys[0]: float("inf")}).n_undecided == 1
    for bad in (-0.1, float("nan"), "0.1", True):
        sc = score(runs, values, uncertainties={keys[0]: bad})
        assert sc.errors == 1 and sc.verdict == "error"
        assert sc.reason == "errored on 1 of 4 runs (1 with an invalid uncertainty)"


def test_recorded_uncertainty_reads_what_the_measure_recorded():
    v = MeasureValue("k", "m", "1", 2.0, None, 0.1, extra={"uncertainty": 0.05, "draws": 20})
    assert recorded_uncertainty(v.extra) == 0.05
    assert recorded_uncertainty({}) is None and recorded_uncertainty(None) is None
    assert json.loads(json.dumps(v.to_json()))["extra"]["uncertainty"] == 0.05


# --- Kendall tau per environment -----------------------------------------------------------------


def test_kendall_tau_per_environment_by_hand():
    runs = []
    for env, sign in (("A", 1.0), ("B", -1.0)):
        for p, gap in ((0.0, 0.1), (0.5, 0.4), (1.0, 0.9)):
            kind = "none" if p == 0 else "labels"
            runs.append(run(f"{env}{p}", env, kind, p, gap=gap, environment=env))
    values = {r.key: (r.gap if r.environment == "A" else -r.gap) for r in runs}
    sc = score(runs, values)
    assert sc.env_kendall_tau == {"A": 1.0, "B": -1.0}
    # Pooled over both environments the two cancel: τ-b 0 (scipy), the per-environment view does not.
    assert sc.kendall_tau == pytest.approx(0.0, abs=1e-12)
    # An environment without its own sweep has no entry.
    only_a_sweeps = [r for r in runs if not (r.environment == "B" and r.p == 0.5)]
    assert score(only_a_sweeps, values).env_kendall_tau == {"A": 1.0}


# --- Jiang's granulated consistency --------------------------------------------------------------


def test_kendall_tau_a_by_hand():
    # (0,1) concordant, (0,2) concordant, (1,2) discordant; with ties counting 0.
    assert kendall_tau_a([1.0, 3.0, 2.0], [0.1, 0.4, 0.9]) == pytest.approx(1 / 3)
    assert kendall_tau_a([1.0, 1.0, 2.0], [0.1, 0.4, 0.9]) == pytest.approx(2 / 3)  # 2 concordant of 3, 1 tie
    assert kendall_tau_a([5.0, 5.0], [0.1, 0.9]) == 0.0
    with pytest.raises(ValueError):
        kendall_tau_a([1.0], [1.0])


def MLP(hidden):
    return (("dataset", '"mnist1d"'), ("model", '"mlp"'), ("model.hidden", json.dumps(hidden)), ("train.lr", "0.05"))


def test_psi_by_hand_two_axes():
    # Axes: model (1x512, 3x512) and randomization (none, labels); one seed.
    #   model   rnd     gap   μ
    #   1x512   none    0.10  1
    #   3x512   none    0.05  3   <- deeper generalizes better, μ says worse: τ = -1
    #   1x512   labels  0.90  5
    #   3x512   labels  0.80  4   <- τ = +1
    # ψ_model = mean(-1, +1) = 0. ψ_randomization: within 1x512 (1 < 5, 0.1 < 0.9) +1,
    # within 3x512 (3 < 4, 0.05 < 0.8) +1, so 1. Ψ = (0 + 1) / 2.
    runs = [
        run("a", "p1", "none", gap=0.10, settings=MLP([512])),
        run("b", "p3", "none", gap=0.05, settings=MLP([512] * 3)),
        run("c", "p1", "labels", gap=0.90, settings=MLP([512])),
        run("d", "p3", "labels", gap=0.80, settings=MLP([512] * 3)),
    ]
    mu = {"a": 1.0, "b": 3.0, "c": 5.0, "d": 4.0}
    psi, by_axis = granulated_consistency(runs, mu)
    assert by_axis == {"model": 0.0, "randomization": 1.0}
    assert psi == 0.5
    sc = score(runs, mu)
    assert sc.psi == 0.5 and sc.psi_by_axis == by_axis
    # A constant measure has τ-a 0 in every group: Ψ = 0, not undefined.
    assert granulated_consistency(runs, {k: 1.0 for k in mu}) == (0.0, {"model": 0.0, "randomization": 0.0})


def test_psi_groups_hold_the_seed_fixed_and_skip_singletons():
    # Sweep p in {0, 0.5, 1} for seeds 0 and 1; seed 1 lacks its p = 0.5 run.
    runs, mu = [], {}
    for seed, order in ((0, (1.0, 3.0, 2.0)), (1, (1.0, None, 2.0))):
        for (p, gap), m in zip(((0.0, 0.1), (0.5, 0.4), (1.0, 0.9)), order):
            kind = "none" if p == 0 else "labels"
            key = f"s{seed}p{p}"
            runs.append(run(key, f"s{seed}", kind, p, seed=seed, gap=gap, settings=MLP([512])))
            if m is not None:
                mu[key] = m
    # seed 0: τ-a = 1/3 (by hand above); seed 1: two runs, concordant, 1. ψ = (1/3 + 1) / 2.
    psi, by_axis = granulated_consistency(runs, mu)
    assert by_axis == {"randomization": pytest.approx(2 / 3)}
    assert psi == pytest.approx(2 / 3)


def test_axes_merge_settings_that_change_together():
    def settings(hidden, wd, schedule, stop_loss):
        return (("model", '"mlp"'), ("model.hidden", json.dumps(hidden)), ("train.weight_decay", json.dumps(wd)),
                ("train.lr_schedule", json.dumps(schedule)), ("train.stop_train_loss", json.dumps(stop_loss)),
                ("train.lr", "0.05"))
    runs = []
    i = 0
    for hidden in ([512], [512, 512, 512]):
        for wd, schedule in ((0.0, "constant"), (5e-4, "exponential")):
            for stop in (None, 0.01):
                runs.append(run(f"r{i}", f"r{i}", settings=settings(hidden, wd, schedule, stop)))
                i += 1
    runs.append(run("x", "r0", "labels", settings=settings([512], 0.0, "constant", None)))
    axes = suite_axes(runs)
    # lr never varies; weight decay and lr schedule form one recipe axis; model name+options one axis.
    assert sorted(axes) == ["lr_schedule+weight_decay", "model", "randomization", "stop_train_loss"]
    assert axes["randomization"]["x"] == ("labels(p=1)",)
    assert len({axes["lr_schedule+weight_decay"][r.key] for r in runs}) == 2


def test_psi_none_without_any_group():
    runs = [run("a", "p", "none", gap=0.1), run("b", "q", "labels", seed=1, gap=0.9)]  # different seeds
    assert granulated_consistency(runs, {"a": 1.0, "b": 2.0}) == (None, {"randomization": None})
