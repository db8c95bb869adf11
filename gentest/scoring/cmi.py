"""Jiang et al.'s conditional-independence score: the conditional mutual information between the
order of a measure and the order of the generalization gap over pairs of networks.

Jiang et al., "Fantastic generalization measures and where to find them" (ICLR 2020), section
5 ("Conditional independence test"), and the scoring program of the NeurIPS 2020 "Predicting
Generalization in Deep Learning" competition (``scoring_program/mutual_information.py``).

Over ordered pairs of distinct runs ``(a, b)`` of a board:

* ``V_g = 1[g_a > g_b]`` and ``V_μ = 1[μ_a > μ_b]`` (a tie is "not greater", as in the PGDL
  code), for the oriented measure μ (a larger value claims a larger gap);
* ``U_S`` is the pair of values ``(θ_a[S], θ_b[S])`` of a set ``S`` of the board's axes
  (:func:`gentest.scoring.suite_axes`: the randomization with its p, the architecture, the
  training settings that vary; never the seed);
* ``I(V_μ; V_g | U_S) = Σ_u p(u) I(V_μ; V_g | U_S = u)`` and
  ``H(V_g | U_S) = Σ_u p(u) H(V_g | U_S = u)``, with ``p(u)`` the share of pairs in cell ``u``;
* the normalized score of ``S`` is ``Î(S) = I(V_μ; V_g | U_S) / H(V_g | U_S)`` ∈ [0, 1]
  (None where ``H(V_g | U_S) = 0``: the conditioning decides the gap's order, nothing is left
  to explain);
* **Jiang's K** is the minimum of ``Î(S)`` over every ``S`` with ``|S| ≤ 2`` (the empty set,
  each axis, each pair of axes): a measure is only as good as its worst conditioning, so one
  that merely tracks a hyper-parameter that moves the gap scores low once that is held fixed.

The **PGDL variant** (the competition's code) differs in three ways, kept here so that numbers
can be compared with the competition's: ``S`` ranges only over pairs of distinct axes
(``|S| = 2``; None with fewer than two axes), the ordered pairs include each run with itself
(``(a, a)`` falls in the cell ``V_g = V_μ = 0``), and the mutual information and the entropy are
averaged *uniformly* over the non-empty cells rather than weighted by their mass, then divided.

Both are symmetric in the sign of the relation: a measure that reliably *inverts* the gap's
order scores as high as one that follows it. Read K beside the sign-error, which has a sign.
Entropies are in bits (the ratio does not depend on the base).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

EMPTY_SET = "∅"


@dataclass
class CMIScore:
    """Jiang's K with the score of each conditioning set, and the PGDL variant's."""

    k: float | None  # min over |S| <= 2 of I(V_mu; V_g | U_S) / H(V_g | U_S)
    k_set: str | None  # the conditioning set that attains it
    by_set: dict[str, float | None] = field(default_factory=dict)  # "∅", "model", "model+randomization", ...
    k_pgdl: float | None = None  # the competition's variant (|S| = 2, self-pairs, uniform cell average)
    n_runs: int = 0


def set_name(axes: Sequence[str]) -> str:
    return "+".join(axes) if axes else EMPTY_SET


def _cell_codes(columns: Sequence[np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One integer per pair (a, b) for the joint value (θ_a[S], θ_b[S]) of the given axis codes."""
    code = np.zeros(len(a), dtype=np.int64)
    for col in columns:
        levels = int(col.max()) + 1
        code = (code * levels + col[a]) * levels + col[b]
    return code


def _entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Row-wise entropy in bits of count vectors (rows with zero total give 0)."""
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, counts / np.where(total > 0, total, 1), 0.0)
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1)), 0.0)
    return terms.sum(axis=-1)


def _cell_tables(cells: np.ndarray, vg: np.ndarray, vm: np.ndarray) -> np.ndarray:
    """Counts[cell, V_g, V_μ] over the non-empty cells."""
    _, inverse = np.unique(cells, return_inverse=True)
    n_cells = int(inverse.max()) + 1 if inverse.size else 0
    flat = np.bincount(inverse * 4 + vg * 2 + vm, minlength=n_cells * 4)
    return flat.reshape(n_cells, 2, 2).astype(float)


def _mi_and_entropy(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: I(V_g; V_μ) and H(V_g) in bits, from 2 × 2 count tables."""
    h_g = _entropy_bits(tables.sum(axis=2))
    h_m = _entropy_bits(tables.sum(axis=1))
    h_joint = _entropy_bits(tables.reshape(len(tables), 4))
    return np.maximum(h_g + h_m - h_joint, 0.0), h_g


def _normalized_cmi(tables: np.ndarray, weighting: str) -> float | None:
    if tables.size == 0:
        return None
    mi, h_g = _mi_and_entropy(tables)
    if weighting == "mass":
        mass = tables.sum(axis=(1, 2))
        mass = mass / mass.sum()
        num, den = float(mass @ mi), float(mass @ h_g)
    else:  # "uniform": the PGDL code's plain average over cells
        num, den = float(mi.mean()), float(h_g.mean())
    return num / den if den > 1e-12 else None


def conditional_mutual_information(
    mu: Mapping[str, float], gaps: Mapping[str, float], axes: Mapping[str, Mapping[str, object]], max_set: int = 2
) -> CMIScore:
    """Jiang's K and the PGDL variant over the runs that have a value in ``mu``.

    ``mu``: run key -> oriented measure value; ``gaps``: run key -> gap; ``axes``: axis name ->
    run key -> that run's (hashable) value on the axis. Needs at least two runs.
    """
    keys = [k for k in mu if k in gaps]
    if len(keys) < 2:
        return CMIScore(k=None, k_set=None, n_runs=len(keys))
    m = np.array([mu[k] for k in keys], dtype=float)
    g = np.array([gaps[k] for k in keys], dtype=float)
    codes = {}
    for name, values in axes.items():
        levels: dict[object, int] = {}
        codes[name] = np.array([levels.setdefault(values[k], len(levels)) for k in keys], dtype=np.int64)
    names = sorted(codes)

    n = len(keys)
    a, b = np.nonzero(~np.eye(n, dtype=bool))  # ordered pairs of distinct runs
    vg, vm = (g[a] > g[b]).astype(np.int64), (m[a] > m[b]).astype(np.int64)
    by_set: dict[str, float | None] = {}
    for size in range(0, max_set + 1):
        for subset in itertools.combinations(names, size):
            cells = _cell_codes([codes[s] for s in subset], a, b)
            by_set[set_name(subset)] = _normalized_cmi(_cell_tables(cells, vg, vm), "mass")
    defined = {s: v for s, v in by_set.items() if v is not None}
    k_set = min(defined, key=lambda s: (defined[s], s)) if defined else None

    k_pgdl = None
    if len(names) >= 2:
        sa, sb = np.nonzero(np.ones((n, n), dtype=bool))  # the competition's loop includes (a, a)
        svg, svm = (g[sa] > g[sb]).astype(np.int64), (m[sa] > m[sb]).astype(np.int64)
        values = [
            _normalized_cmi(_cell_tables(_cell_codes([codes[x], codes[y]], sa, sb), svg, svm), "uniform")
            for x, y in itertools.combinations(names, 2)
        ]
        values = [v for v in values if v is not None]
        k_pgdl = min(values) if values else None
    return CMIScore(k=defined[k_set] if k_set else None, k_set=k_set, by_set=by_set, k_pgdl=k_pgdl, n_runs=n)
