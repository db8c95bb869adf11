"""Jiang et al.'s conditional mutual information: a hand-computed case, and both the paper's
formula and the PGDL scoring program's written out here as plain loops over pairs, against
gentest's vectorized version on a small synthetic board."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from gentest.scoring import ScoredRun, score_measure, suite_axes
from gentest.scoring.cmi import EMPTY_SET, conditional_mutual_information


def h(counts) -> float:
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts if c)


def mi_and_h(table: Counter) -> tuple[float, float]:
    """I(V_g; V_μ) and H(V_g) in bits from a Counter over (vg, vm)."""
    total = sum(table.values())
    pg = Counter()
    pm = Counter()
    for (g, m), c in table.items():
        pg[g] += c
        pm[m] += c
    mi = sum(c / total * math.log2((c / total) / (pg[g] / total * pm[m] / total)) for (g, m), c in table.items() if c)
    return mi, h(list(pg.values()))


def jiang_brute(mu, gaps, axes, subset, include_self=False, weighting="mass"):
    """The normalized CMI of one conditioning set, as loops over ordered pairs of runs."""
    keys = list(mu)
    cells = defaultdict(Counter)
    for a in keys:
        for b in keys:
            if a == b and not include_self:
                continue
            cell = tuple((axes[s][a], axes[s][b]) for s in subset)
            cells[cell][(int(gaps[a] > gaps[b]), int(mu[a] > mu[b]))] += 1
    total = sum(sum(t.values()) for t in cells.values())
    parts = [(sum(t.values()) / total, *mi_and_h(t)) for t in cells.values()]
    if weighting == "mass":
        num, den = sum(p * mi for p, mi, _ in parts), sum(p * hg for p, _, hg in parts)
    else:
        num, den = np.mean([mi for _, mi, _ in parts]), np.mean([hg for _, _, hg in parts])
    return num / den if den > 1e-12 else None


def test_hand_computed_three_runs_no_axes():
    # Gaps 1 < 2 < 3; the measure orders runs b and c the wrong way: μ = (1, 3, 2).
    # Six ordered pairs: (V_g, V_μ) = ab (0,0), ac (0,0), ba (1,1), bc (0,1), ca (1,1), cb (1,0).
    # p(V_g=1) = 1/2 -> H(V_g) = 1 bit. Joint: (0,0) 2/6, (1,1) 2/6, (0,1) 1/6, (1,0) 1/6; the
    # marginals are ½ each, so I = 2·(1/3)log2(4/3) + 2·(1/6)log2(2/3).
    mu = {"a": 1.0, "b": 3.0, "c": 2.0}
    gaps = {"a": 1.0, "b": 2.0, "c": 3.0}
    expected = 2 / 3 * math.log2(4 / 3) + 1 / 3 * math.log2(2 / 3)
    got = conditional_mutual_information(mu, gaps, {})
    assert got.by_set[EMPTY_SET] == pytest.approx(expected, abs=1e-12)
    assert got.k == pytest.approx(expected, abs=1e-12) and got.k_set == EMPTY_SET
    assert got.k_pgdl is None  # the competition's variant needs two axes


def test_the_gap_itself_scores_one_and_a_constant_zero():
    gaps = {f"r{i}": g for i, g in enumerate([0.1, 0.5, 0.3, 0.9, 0.7])}
    axes = {"model": {k: i % 2 for i, k in enumerate(gaps)}}
    assert conditional_mutual_information(dict(gaps), gaps, axes).k == pytest.approx(1.0)
    assert conditional_mutual_information({k: 1.0 for k in gaps}, gaps, axes).k == pytest.approx(0.0)


def synthetic_board(seed=0):
    """Three axes (model 3 values, lr 2 values, randomization 3 kinds), two seeds: 36 runs; the
    gap depends on all three plus noise, the measure on the randomization and the model only."""
    rng = np.random.default_rng(seed)
    mu, gaps, axes = {}, {}, {"model": {}, "lr": {}, "randomization": {}}
    for model, lr, rand, s in itertools.product(range(3), range(2), ("none", "labels", "gaussian"), range(2)):
        key = f"m{model}-lr{lr}-{rand}-s{s}"
        base = {"none": 0.1, "labels": 0.7, "gaussian": 0.8}[rand]
        gaps[key] = base + 0.05 * model - 0.03 * lr + rng.normal(0, 0.04)
        mu[key] = base * 2 + 0.2 * model + rng.normal(0, 0.2)
        axes["model"][key], axes["lr"][key], axes["randomization"][key] = model, lr, rand
    return mu, gaps, axes


def test_against_the_papers_formula_written_as_loops():
    mu, gaps, axes = synthetic_board()
    got = conditional_mutual_information(mu, gaps, axes)
    names = sorted(axes)
    expected = {}
    for size in (0, 1, 2):
        for subset in itertools.combinations(names, size):
            expected["+".join(subset) or EMPTY_SET] = jiang_brute(mu, gaps, axes, subset)
    assert set(got.by_set) == set(expected) and len(expected) == 7
    for name, value in expected.items():
        assert got.by_set[name] == pytest.approx(value, abs=1e-12), name
    defined = {k: v for k, v in expected.items() if v is not None}
    assert got.k == pytest.approx(min(defined.values()), abs=1e-12)
    assert 0 < got.k < 1


def test_against_the_pgdl_scoring_program_written_as_loops():
    # The competition's mutual_information.py: ordered pairs of distinct hyper-parameters, every
    # ordered pair of models including a model with itself, MI and H(V_g) averaged uniformly over
    # the cells of the table, then divided; the minimum over the pairs of hyper-parameters.
    mu, gaps, axes = synthetic_board(seed=3)
    values = [jiang_brute(mu, gaps, axes, (x, y), include_self=True, weighting="uniform")
              for x in axes for y in axes if x != y]
    got = conditional_mutual_information(mu, gaps, axes)
    assert got.k_pgdl == pytest.approx(min(v for v in values if v is not None), abs=1e-12)
    assert got.k_pgdl != pytest.approx(got.k)  # the variant differs from the paper's here


def test_score_measure_conditions_on_the_board_axes_never_the_seed():
    runs, values = [], {}
    for model in ("mlp", "cnn"):
        for s in range(2):
            pk = f"{model}{s}"
            settings = (("model", f'"{model}"'),)
            for rand, gap in (("none", 0.1 + 0.1 * s), ("labels", 0.8 + 0.05 * s)):
                key = f"{pk}/{rand}"
                runs.append(ScoredRun(key, pk, rand, 0.0 if rand == "none" else 1.0, s, gap + (model == "cnn") * 0.01,
                                      f"mnist1d/{model}", settings))
                values[key] = gap * (1 if model == "mlp" else -1)
    sc = score_measure("m", "t", "higher-worse", runs, values)
    axes = suite_axes(runs)
    assert sorted(axes) == ["model", "randomization"]
    assert set(sc.cmi_by_set) == {EMPTY_SET, "model", "randomization", "model+randomization"}
    mu = dict(values)
    gaps = {r.key: r.gap for r in runs}
    for name, subset in ((EMPTY_SET, ()), ("model", ("model",)), ("randomization", ("randomization",))):
        assert sc.cmi_by_set[name] == pytest.approx(jiang_brute(mu, gaps, axes, subset), abs=1e-12)
    # The measure follows the gap on the MLP and inverts it on the CNN: K sees dependence either way.
    assert sc.cmi is not None and sc.cmi_pgdl is not None
