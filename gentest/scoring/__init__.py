"""Scoring: does a generalization measure tell a natural network from its randomized twin?

Zhang et al. (ICLR 2017) showed that the same architecture, trained the same way, fits both
real data and randomized data (random labels, shuffled or random pixels, Gaussian inputs);
only the generalization gap tells the two apart. gentest trains such twins in *pairs* (same
settings, same seed, same initialization; only the randomization differs) and scores each
measure by whether it separates them. This module is that scoring; it is pure
Python/numpy/scipy and sees a run only as a :class:`ScoredRun`.

Definitions (``μ`` = the measure, ``g`` = the gap ``train_acc − test_acc``):

* **Orientation.** Measures are declared ``"higher-worse"`` (a larger value claims a larger
  gap, e.g. a norm or a bound) or ``"higher-better"`` (e.g. a margin). A ``higher-better``
  measure is negated first, so that everywhere below a larger oriented value claims worse
  generalization.

* **Pairs.** Within each ``pair_key`` group (runs that differ only in randomization), each
  natural run (``randomization == "none"``) is paired with each randomized run. Runs with
  different ``pair_key`` are never paired. A pair is scored only when the measure has a value
  on both twins.

* **Sign-error** (Dziugaite et al., "In search of robust measures of generalization",
  NeurIPS 2020, section 3; anchors.md section 4). For a pair,
  ``ℓ = (1 − sign(μ_nat − μ_rand) · sign(g_nat − g_rand)) / 2 ∈ {0, ½, 1}``: 0 if the measure
  orders the twins like the gap, 1 if it inverts them, ½ if it ties them. ``sign_error`` is
  the weighted mean of ``ℓ`` over scored pairs (weights below). A pair whose twins have *equal gaps* is left out for
  every measure (and counted, ``n_gap_ties``): there is no order to get right, and Dziugaite
  et al.'s pair weight ``(ψ_H(|Δg|) − ½)₊`` is 0 at ``Δg = 0``. It happens by chance when the
  twins generalize alike, since accuracies are discrete (an MLP's shuffled-pixel twin learns
  an equivalent problem: paper-fig1 has such a pair at 1,000 test points).
  Signs are taken by comparison (``(a > b) − (a < b)``), so ``±inf`` values order normally and
  two equal infinities tie.

  *Ties are exact.* ``n_ties`` counts pairs with ``μ_nat == μ_rand`` in exact floating-point
  equality, with no tolerance. A quantity that does not depend on the data (a parameter
  count, an architecture constant) is computed by the same operations on both twins and comes
  out bitwise equal, so it ties. A tolerance would have to pick a scale for every measure at
  once and would declare real but small differences to be ties. The flip side: a measure that
  is only *mathematically* invariant but reduces permuted data in a different order (say an
  input norm under ``shuffled-pixels``) can differ in the last bits between the twins and is
  then scored by that rounding noise. Such a measure should compute its invariant quantity in
  an order-independent way.

* **Pair weights** (Dziugaite et al. 2020, section 4; :mod:`gentest.scoring.weights`). Each pair
  with different gaps gets the weight ``w = (ψ − ½)₊``, ψ the Hoeffding confidence that the two
  gaps, measured on ``n_test`` test points each, are ordered as observed. A pair of weight 0
  (gaps closer than the test sets resolve: ``|Δg| < 0.062`` at 1,000 points) is left out of
  every weighted number and counted in ``n_unresolved``. ``sign_error`` is the weighted mean of
  ``ℓ``; ``sign_error_unweighted`` the plain mean over every pair with different gaps (schema 1's
  sign-error). Runs without a known test-set size (``ScoredRun.n_test`` None) fall back to the
  indicator weight 1. :func:`pair_weights` lists every pair with its weight.

* **Environments.** Following Dziugaite et al.'s worst case over environments, a pair's
  environment is ``run.environment`` (architecture × training setting, taken from the natural
  twin) plus ``"/"`` plus the randomized twin's kind, with ``"(p=…)"`` for label corruption,
  e.g. ``"mnist1d/mlp hidden=[512] weight_decay=0.0/labels(p=0.5)"`` (names from
  ``gentest.pipeline.environment_names``). ``env_sign_errors`` maps each environment with a
  positive weight to its weighted mean ``ℓ`` and ``env_ess`` to its effective sample size
  ``(Σw)²/Σw²``. Only environments with ``env_ess >= THRESHOLDS["min_env_ess"]`` (12, as
  Dziugaite et al.) enter the robust score: ``worst_env_sign_error`` is the largest over them
  and ``worst_env`` its name (None when none qualifies); the others are listed in
  ``envs_left_out``, and ``worst_env_any`` is the worst counting them too. ``env_quantiles``
  gives the mean, 90th percentile and maximum over the kept environments (Dziugaite et al.'s
  CDF summaries).

* **AUROC.** The oriented measure as a classifier with randomized runs as positives and natural
  runs as negatives: ``P(μ_rand > μ_nat) + ½ P(μ_rand == μ_nat)`` over every natural ×
  randomized combination of runs that have a value (across all pair groups, not only within
  them). This is the Mann-Whitney ``U`` of the randomized sample divided by ``n_rand · n_nat``
  (``scipy.stats.mannwhitneyu(rand, nat).statistic / (n_rand · n_nat)``); it is computed here
  from the same comparison matrix the bootstrap reuses. 1 separates, 0 inverts, ½ is chance.
  ``None`` when either class has no value.

* **Kendall τ** (Jiang et al., "Fantastic generalization measures and where to find them",
  ICLR 2020). Only when the suite sweeps label corruption: among runs with randomization
  ``"none"`` or ``"labels"`` there are at least 3 distinct ``p`` values. Then ``kendall_tau``
  is Kendall's **tau-b** (``scipy.stats.kendalltau`` default: tie-corrected; equal to Jiang's
  τ-a when neither variable has ties) between the oriented measure and the gap over those runs
  that have a value. ``None`` without a sweep, and also where τ-b is undefined (fewer than two
  runs, or the measure or the gap constant over them).

* **95 % interval of the sign-error** (:mod:`gentest.scoring.intervals`): Clopper–Pearson on the
  effective number of pairs, Kish's ``(Σw)²/Σw²`` divided by the design effect of pairs that
  share a natural twin (clusters), ``n_effective``; the design effect is ``design_effect``. It
  replaces schema 1's percentile bootstrap over seeds, which with two or three seeds is the
  range of the per-seed sign-errors and covers the truth about three times in four. Its
  coverage on boards of the shapes of ``quick`` and ``standard`` is simulated in the tests.

* **AUROC interval.** The distinct seeds of runs with a value are resampled with replacement
  ``n_boot`` times (a ``numpy.random.Generator`` seeded by ``seed``; no global random state) and
  the AUROC is recomputed; ``auroc_ci`` is the (2.5, 97.5) percentile. With two or three seeds
  this is the range of the per-seed AUROCs: a description of the spread, not a verdict.

* **Conditional mutual information** (Jiang et al. 2020, section 5; :mod:`gentest.scoring.cmi`):
  over every ordered pair of runs with a value, the normalized CMI between the order of the
  measure and the order of the gap given the two runs' values of a set ``S`` of the suite's axes
  (:func:`suite_axes`; the seed never conditions). ``cmi`` is Jiang's K, the minimum over
  ``|S| <= 2``, attained at ``cmi_set``; ``cmi_by_set`` holds every set's value and ``cmi_pgdl``
  the NeurIPS 2020 competition's variant.

* **Undecided pairs** (stochastic measures). A measure whose value is an estimate (a
  PAC-Bayes or sharpness search, a Hutchinson trace, a power iteration) records its standard
  error with the value: ``ctx.record(uncertainty=<standard error>)``, which reaches scoring as
  ``MeasureValue.extra["uncertainty"]`` (:func:`recorded_uncertainty`). A pair whose values
  differ, but by no more than the twins' combined noise,
  ``|μ_nat − μ_rand| <= z · sqrt(u_nat² + u_rand²)`` with ``z = THRESHOLDS["undecided_z"]``
  (2: about a 95 % two-sided band for a normal difference), is *undecided*: the measure cannot
  tell the twins apart beyond its own noise. It enters the sign-error as ½, like a tie (the
  conservative choice: noise cannot make a measure look better than it is), but is counted in
  ``n_undecided``, apart from the exact ties of ``n_ties``, and the reason says "k of n pairs
  undecided within the measures' noise". A run without a recorded uncertainty has ``u = 0``;
  with ``u = 0`` on both twins nothing is undecided. The band ignores any correlation between
  the twins' estimates (common random numbers make the true noise of the difference smaller),
  so it errs towards "undecided". An uncertainty that is negative, NaN or not a number makes
  that value unusable: it counts in ``errors`` like a failed value.

* **Kendall τ per environment.** ``env_kendall_tau`` maps each environment (``run.environment``,
  without the randomization kind) that sweeps label corruption on its own (≥ 3 distinct p among
  its "none" and "labels" runs) to τ-b between the oriented measure and the gap over those runs.

* **Granulated consistency Ψ** (Jiang et al. 2020, section 4; anchors.md section 4). The
  axes are the settings that vary in the suite: ``"randomization"`` (kind with its p), the
  architecture ``"model"`` (model name and options together: an MLP's depth and a CNN's
  channels are one choice, not two), ``"dataset"`` (name and options), and the training
  settings (``run.settings``), where settings that vary together across the suite (a recipe
  that changes weight decay and the lr schedule at once, or the stopping rule's accuracy and
  loss thresholds) form one axis, named by joining them with ``+``. The seed is never an axis:
  it is held fixed in every group. For axis i, the runs are grouped by every other axis and
  the seed; ψ_i is the mean over groups of ≥ 2 runs of Jiang's τ (τ-a,
  ``1/(n(n−1)) Σ_{a≠b} sign(μ_a − μ_b) sign(g_a − g_b)``, ties count 0, so a constant measure
  scores 0 rather than being left out), and Ψ is the mean of the ψ_i that have a group.
  ``psi_by_axis`` holds ψ_i (``None`` for an axis without a group of two runs); ``psi`` is
  ``None`` when no axis has one. Only runs with a value take part. Since a pair group is a
  group of the randomization axis, ψ_randomization = 1 − 2 · sign-error when every group is
  one natural run and one twin.

* **Verdict** (thresholds in :data:`THRESHOLDS`). The verdict is honest about its sample: it
  rests on the 95 % interval, not on the point estimate, so a verdict that another machine
  (other floating-point rounding, so other trained networks) could flip is reported as
  ``inconclusive`` rather than as a finding.

  - ``"error"``: the measure errored (value ``None``, or NaN) on at least one run, or no pair
    could be scored. Sign-error and the rest are still reported over the pairs that could be
    scored.
  - ``"separates"``: the whole interval is ``<= 0.1`` (``separates_max_sign_error``).
  - ``"inverts"``: the whole interval is ``>= 0.9`` (``inverts_min_sign_error``): it orders
    the twins, but the wrong way round; a declared orientation may be wrong.
  - ``"unreliable"``: the whole interval lies in (0.1, 0.5) (``chance_sign_error``): the
    measure orders most pairs like the gap, but not reliably.
  - ``"chance"``: the interval lies in (0.1, 0.9) and reaches 0.5 or lies above it: no better
    than chance, or ties (schema 1 called both this and ``unreliable`` ``"fails"``).
  - ``"inconclusive"``: the interval reaches 0.1 or 0.9 from in between (e.g. [0.0, 0.2]), so
    the pairs at hand cannot tell; the reason gives the interval and says "add pairs". Also
    when the scored pairs come from fewer than ``min_seeds`` (2) seeds: one trained network per
    setting is exactly what flips on another machine.

  A clean record needs about 36 effective pairs before its interval falls under 0.1: small
  suites give ``inconclusive``, and :func:`consistent_with` says whether such a sample agrees
  with an expected verdict (what ``gentest check`` asks). Two verdicts contradict each other
  when the ranges of the sign-error they claim are disjoint (:func:`claims_contradict`).
  ``reason`` says why in a short phrase ("orders 9 of 9 pairs like the gap").

* **Robust order.** ``score_all`` sorts by verdict, then by the robust score of Dziugaite et
  al.: the worst-environment sign-error over the kept environments (none last), then the
  weighted mean sign-error, then the name. The report's heatmap uses the same order.

* **Controls** (DESIGN.md). ``control.gap`` (the gap itself, an oracle) must have sign-error 0
  on every pair; ``control.param_count`` (a property of the architecture alone) must tie every
  pair. These are conditions on the pairs, not on the verdict, so they hold on a one-seed suite
  too. If either does not, or if *every* pair of an environment has equal gaps (a
  randomization that changed nothing), the suite is broken (e.g. twins with different
  architectures), not the measures: see :func:`controls_ok`.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from gentest.leaderboard import SCHEMA_VERSION, MeasureScore  # noqa: F401  (SCHEMA_VERSION re-exported)
from gentest.scoring.cmi import conditional_mutual_information
from gentest.scoring.intervals import sign_error_interval
from gentest.scoring.weights import effective_sample_size, pair_weight

# Verdict thresholds; the report prints them.
THRESHOLDS: dict[str, float] = {
    "separates_max_sign_error": 0.1,  # the whole 95 % interval at or below this: separates
    "inverts_min_sign_error": 0.9,  # the whole interval at or above this: inverts
    "chance_sign_error": 0.5,  # an interval below it (and above 0.1): unreliable; reaching it: chance
    "min_seeds": 2,  # fewer seeds among the scored pairs: one network per setting, inconclusive
    "undecided_z": 2.0,  # a pair within z · (combined standard error) is undecided
    "min_env_ess": 12.0,  # environments with a smaller effective sample stay out of the worst case
}
NOT_APPLICABLE = "n/a"
INCONCLUSIVE = "inconclusive"
SEPARATES = "separates"
INVERTS = "inverts"
UNRELIABLE = "unreliable"  # orders most pairs, but not reliably: the interval lies in (0.1, 0.5)
CHANCE = "chance"  # no better than chance, or ties: the interval reaches 0.5, or lies in [0.5, 0.9)
LEGACY_FAILS = "fails"  # schema 1's single verdict for both; read from old boards only
VERDICTS = (SEPARATES, INVERTS, INCONCLUSIVE, UNRELIABLE, CHANCE, "error", NOT_APPLICABLE)  # also the sort order
# The verdicts that state a finding, and the range of the sign-error each one claims; two
# findings contradict each other when their ranges do not overlap (compare).
DEFINITE_VERDICTS = (SEPARATES, INVERTS, UNRELIABLE, CHANCE)
CLAIMED_SIGN_ERROR: dict[str, tuple[float, float]] = {
    SEPARATES: (0.0, 0.1),
    UNRELIABLE: (0.1, 0.5),
    CHANCE: (0.1, 0.9),
    LEGACY_FAILS: (0.1, 0.9),
    INVERTS: (0.9, 1.0),
}
ORIENTATIONS = ("higher-worse", "higher-better")
NATURAL = "none"
LABELS = "labels"
CI_PERCENTILES = (2.5, 97.5)  # of the AUROC's bootstrap over seeds
MIN_SWEEP_LEVELS = 3  # distinct p among "none"/"labels" runs for Kendall tau to be computed
CONTROL_GAP = "control.gap"
CONTROL_PARAM_COUNT = "control.param_count"
RANDOMIZATION_AXIS = "randomization"
UNCERTAINTY_KEY = "uncertainty"  # MeasureValue.extra key a stochastic measure records (ctx.record)


@dataclass(frozen=True)
class ScoredRun:
    """One run as scoring sees it."""

    key: str
    pair_key: str  # equal for runs that differ only in randomization
    randomization: str  # "none" for the natural twin; else "labels", "shuffled-pixels", ...
    p: float  # corruption level (0 for none, label-corruption probability for labels, else 1)
    seed: int
    gap: float  # train_acc - test_acc
    environment: str  # architecture x training setting, e.g. "mnist1d/mlp hidden=[512]"
    # Every setting but randomization and seed, as (name, canonical JSON value) pairs: "dataset",
    # "dataset.<option>", "model", "model.<option>", "train.<setting>". The axes of Ψ and CMI.
    settings: tuple[tuple[str, str], ...] = ()
    n_test: int | None = None  # test-set size behind the gap (pair weights); None: unknown

    @property
    def is_natural(self) -> bool:
        return self.randomization == NATURAL

    def kind(self) -> str:
        """The randomization with its level where it has one, e.g. ``labels(p=0.5)``."""
        return self.randomization + (f"(p={self.p:g})" if self.randomization == LABELS else "")


def environment_of(natural: ScoredRun, randomized: ScoredRun) -> str:
    """The Dziugaite environment of a pair: the twins' setting and the randomization kind."""
    return f"{natural.environment}/{randomized.kind()}"


def pair_runs(runs: Sequence[ScoredRun]) -> list[tuple[ScoredRun, ScoredRun]]:
    """Every (natural, randomized) pair: each natural run × each randomized run of its group.

    Groups and pairs come out in the order of ``runs``.
    """
    groups: dict[str, list[ScoredRun]] = defaultdict(list)
    for r in runs:
        groups[r.pair_key].append(r)
    out = []
    for group in groups.values():
        naturals = [r for r in group if r.is_natural]
        randomized = [r for r in group if not r.is_natural]
        out.extend((n, r) for n in naturals for r in randomized)
    return out


def pair_weights(runs: Sequence[ScoredRun]) -> list[dict[str, object]]:
    """Every (natural, randomized) pair with its environment, gap difference ``g_rand − g_nat``,
    the twins' test-set sizes and Dziugaite et al.'s weight (:mod:`gentest.scoring.weights`).
    The weight depends on the runs alone, so it is the same for every measure."""
    return [
        {"natural": n.key, "randomized": r.key, "environment": environment_of(n, r), "delta_gap": r.gap - n.gap,
         "n_test": [n.n_test, r.n_test], "weight": pair_weight(n.gap, r.gap, n.n_test, r.n_test)}
        for n, r in pair_runs(runs)
    ]


def recorded_uncertainty(extra: Mapping[str, object] | None) -> object:
    """The standard error a measure recorded with its value (``ctx.record(uncertainty=...)``),
    or None. Returned as recorded; :func:`score_measure` checks it."""
    return (extra or {}).get(UNCERTAINTY_KEY)


def _sign(a: float, b: float) -> int:
    return (a > b) - (a < b)


def _check_runs(runs: Sequence[ScoredRun]) -> None:
    seen = set()
    for r in runs:
        if r.key in seen:
            raise ValueError(f"run {r.key!r} appears twice")
        seen.add(r.key)
        if not math.isfinite(r.gap):
            raise ValueError(f"run {r.key!r} has a non-finite gap {r.gap!r}")


def _valid_uncertainty(u: object) -> bool:
    return isinstance(u, numbers.Real) and not isinstance(u, bool) and not math.isnan(u) and u >= 0


def _oriented_values(
    runs: Sequence[ScoredRun], values: Mapping[str, float | None], orientation: str,
    uncertainties: Mapping[str, object],
) -> tuple[dict[str, float], int]:
    """Run key -> oriented value, for runs where the measure has a usable value (not None, not
    NaN, no invalid uncertainty); and how many values were dropped for their uncertainty."""
    sign = -1.0 if orientation == "higher-better" else 1.0
    out = {}
    bad_uncertainty = 0
    for r in runs:
        v = values.get(r.key)
        if v is None:
            continue
        v = float(v)
        if math.isnan(v):
            continue
        u = uncertainties.get(r.key)
        if u is not None and not _valid_uncertainty(u):
            bad_uncertainty += 1
            continue
        out[r.key] = sign * v
    return out, bad_uncertainty


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def score_measure(
    name: str,
    family: str,
    orientation: str,
    runs: list[ScoredRun],
    values: dict[str, float | None],
    n_boot: int = 1000,
    seed: int = 0,
    not_applicable: Mapping[str, str] | None = None,
    uncertainties: Mapping[str, object] | None = None,
) -> MeasureScore:
    """Score one measure over a suite's runs (see the module docstring for every definition).

    ``values[run.key]`` is the measure on that run, or ``None`` (or missing, or NaN) where it
    errored; those runs count in ``errors`` and their pairs are skipped. Runs in
    ``not_applicable`` (run key -> reason) are left out altogether; if that is every run the
    verdict is "n/a" with the reason. ``uncertainties[run.key]`` is the standard error the
    measure recorded with that value, if any (see "Undecided pairs").
    """
    not_applicable = dict(not_applicable or {})
    if not_applicable:
        applicable = [r for r in runs if r.key not in not_applicable]
        reason = next(iter(not_applicable.values()))
        if not applicable:
            return MeasureScore(
                name=name, family=family, orientation=orientation, n_pairs=0, sign_error=None,
                sign_error_ci=None, worst_env_sign_error=None, worst_env=None, env_sign_errors={},
                auroc=None, auroc_ci=None, kendall_tau=None, verdict=NOT_APPLICABLE, errors=0,
                reason=f"does not apply: {reason}",
            )
        score = score_measure(name, family, orientation, applicable, values, n_boot, seed, uncertainties=uncertainties)
        score.reason += f"; does not apply to {len(not_applicable)} of {len(runs)} runs ({reason})"
        return score
    if orientation not in ORIENTATIONS:
        raise ValueError(f"measure {name!r}: orientation must be one of {ORIENTATIONS}, not {orientation!r}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, not {n_boot}")
    _check_runs(runs)
    uncertainties = dict(uncertainties or {})
    mu, bad_uncertainty = _oriented_values(runs, values, orientation, uncertainties)
    errors = len(runs) - len(mu)
    z = THRESHOLDS["undecided_z"]

    # Pairs with different gaps, each with its sign-error kept as 2ℓ ∈ {0, 1, 2} (exact sums)
    # and Dziugaite et al.'s weight; a pair of weight 0 is left out of every weighted number.
    loss2: list[int] = []
    weights: list[float] = []
    pair_seeds: list[int] = []
    clusters: list[str] = []  # the natural twin: its pairs share that network
    envs: list[str] = []
    n_ties = n_undecided = n_gap_ties = 0
    env_pairs: dict[str, int] = defaultdict(int)
    env_gap_ties: dict[str, int] = defaultdict(int)
    for nat, rnd in pair_runs(runs):
        env = environment_of(nat, rnd)
        env_pairs[env] += 1
        s_gap = _sign(nat.gap, rnd.gap)
        if s_gap == 0:
            # Equal gaps leave nothing to order: no measure can be right or wrong on the pair
            # (Dziugaite et al.'s pair weight is 0 at Δg = 0), so it is left out, and counted.
            n_gap_ties += 1
            env_gap_ties[env] += 1
            continue
        if nat.key not in mu or rnd.key not in mu:
            continue
        s_mu = _sign(mu[nat.key], mu[rnd.key])
        if s_mu:
            noise = math.hypot(float(uncertainties.get(nat.key) or 0.0), float(uncertainties.get(rnd.key) or 0.0))
            undecided = noise > 0 and abs(mu[nat.key] - mu[rnd.key]) <= z * noise
        else:
            undecided = False
        w = pair_weight(nat.gap, rnd.gap, nat.n_test, rnd.n_test)
        loss2.append(1 if undecided else 1 - s_mu * s_gap)
        weights.append(w)
        pair_seeds.append(nat.seed)
        clusters.append(nat.key)
        envs.append(env)
        if w > 0:
            n_ties += s_mu == 0
            n_undecided += undecided
    gap_tied_envs = sorted(env for env, n in env_gap_ties.items() if n == env_pairs[env])
    scored = [i for i, w in enumerate(weights) if w > 0]
    n_pairs = len(scored)
    n_unresolved = len(weights) - n_pairs
    losses = [loss2[i] / 2 for i in scored]
    ws = [weights[i] for i in scored]

    sign_error_unweighted = sum(loss2) / (2 * len(loss2)) if loss2 else None
    sign_error = _weighted_mean(losses, ws)
    env_members: dict[str, list[int]] = defaultdict(list)
    for i in scored:
        env_members[envs[i]].append(i)
    env_sign_errors = {env: _weighted_mean([loss2[i] / 2 for i in idx], [weights[i] for i in idx])
                       for env, idx in sorted(env_members.items())}
    env_ess = {env: effective_sample_size(weights[i] for i in idx) for env, idx in sorted(env_members.items())}
    min_ess = THRESHOLDS["min_env_ess"]
    kept = {env: e for env, e in env_sign_errors.items() if env_ess[env] >= min_ess - 1e-9}
    envs_left_out = sorted(set(env_sign_errors) - set(kept))
    worst_env = max(kept, key=kept.__getitem__) if kept else None
    worst_env_sign_error = kept[worst_env] if worst_env is not None else None
    worst_env_any = max(env_sign_errors, key=env_sign_errors.__getitem__) if env_sign_errors else None
    env_quantiles = _env_quantiles(list(kept.values()))

    interval = sign_error_interval(losses, ws, [clusters[i] for i in scored])
    sign_error_ci, n_effective, deff = interval if interval is not None else (None, 0.0, None)

    # AUROC from the comparison matrix C[i, j] = 1 / ½ / 0 for randomized i vs natural j.
    rand_runs = [r for r in runs if not r.is_natural and r.key in mu]
    nat_runs = [r for r in runs if r.is_natural and r.key in mu]
    auroc = None
    comparisons = None
    if rand_runs and nat_runs:
        x = np.array([mu[r.key] for r in rand_runs])
        y = np.array([mu[r.key] for r in nat_runs])
        comparisons = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        auroc = float(comparisons.sum() / comparisons.size)

    kendall_tau = _kendall_tau(runs, mu)
    axes = suite_axes(runs)
    psi, psi_by_axis = granulated_consistency(runs, mu, axes)
    cmi = conditional_mutual_information(mu, {r.key: r.gap for r in runs}, axes)

    auroc_ci = _auroc_bootstrap(runs, mu, rand_runs, nat_runs, comparisons, n_boot, seed)
    n_seeds = len({pair_seeds[i] for i in scored})

    verdict, reason = _verdict(
        sign_error, sign_error_ci, n_effective, n_seeds, n_pairs, [loss2[i] for i in scored], n_ties, n_undecided,
        n_gap_ties, n_unresolved, errors, len(runs),
    )
    if bad_uncertainty:
        reason += f" ({bad_uncertainty} with an invalid uncertainty)"
    return MeasureScore(
        name=name,
        family=family,
        orientation=orientation,
        n_pairs=n_pairs,
        sign_error=sign_error,
        sign_error_ci=sign_error_ci,
        worst_env_sign_error=worst_env_sign_error,
        worst_env=worst_env,
        env_sign_errors=env_sign_errors,
        auroc=auroc,
        auroc_ci=auroc_ci,
        kendall_tau=kendall_tau,
        verdict=verdict,
        errors=errors,
        n_ties=n_ties,
        reason=reason,
        n_undecided=n_undecided,
        n_seeds=n_seeds,
        env_kendall_tau=_env_kendall_tau(runs, mu),
        psi=psi,
        psi_by_axis=psi_by_axis,
        n_gap_ties=n_gap_ties,
        gap_tied_envs=gap_tied_envs,
        sign_error_unweighted=sign_error_unweighted,
        n_effective=n_effective,
        design_effect=deff,
        n_unresolved=n_unresolved,
        env_ess=env_ess,
        envs_left_out=envs_left_out,
        worst_env_any=worst_env_any,
        worst_env_any_sign_error=env_sign_errors[worst_env_any] if worst_env_any is not None else None,
        env_quantiles=env_quantiles,
        cmi=cmi.k,
        cmi_set=cmi.k_set,
        cmi_by_set=cmi.by_set,
        cmi_pgdl=cmi.k_pgdl,
    )


def _weighted_mean(xs: Sequence[float], ws: Sequence[float]) -> float | None:
    total = math.fsum(ws)
    return math.fsum(x * w for x, w in zip(xs, ws)) / total if total > 0 else None


def _env_quantiles(errors: list[float]) -> dict[str, float | None]:
    """Dziugaite et al.'s summary of the distribution of per-environment sign-errors (their CDF
    figures): the mean, the 90th percentile and the maximum over the environments kept."""
    if not errors:
        return {"mean": None, "p90": None, "max": None}
    return {"mean": float(np.mean(errors)), "p90": float(np.percentile(errors, 90)), "max": float(max(errors))}


# -- Kendall tau and Psi -----------------------------------------------------------------------------

def sweeps_label_corruption(runs: Sequence[ScoredRun]) -> bool:
    """Whether ``runs`` sweep p: at least 3 distinct p among "none" and "labels" runs."""
    levels = {r.p for r in runs if r.randomization in (NATURAL, LABELS)}
    return len(levels) >= MIN_SWEEP_LEVELS


def _kendall_tau(runs: Sequence[ScoredRun], mu: Mapping[str, float]) -> float | None:
    if not sweeps_label_corruption(runs):
        return None
    swept = [r for r in runs if r.randomization in (NATURAL, LABELS) and r.key in mu]
    x = [mu[r.key] for r in swept]
    y = [r.gap for r in swept]
    # tau-b is 0/0 when either variable is constant; say None rather than NaN.
    if len(swept) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    tau = float(stats.kendalltau(x, y).statistic)  # variant="b" (the default)
    return tau if math.isfinite(tau) else None


def _env_kendall_tau(runs: Sequence[ScoredRun], mu: Mapping[str, float]) -> dict[str, float | None]:
    by_env: dict[str, list[ScoredRun]] = defaultdict(list)
    for r in runs:
        by_env[r.environment].append(r)
    return {env: _kendall_tau(members, mu) for env, members in sorted(by_env.items()) if sweeps_label_corruption(members)}


def kendall_tau_a(x: Sequence[float], y: Sequence[float]) -> float:
    """Jiang et al.'s τ: ``1/(n(n−1)) Σ_{a≠b} sign(x_a − x_b) sign(y_a − y_b)``; ties count 0."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("kendall_tau_a needs two sequences of equal length >= 2")
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    # Signs by comparison, so that infinities order (and equal infinities tie) as in the pairs.
    sx = (xa[:, None] > xa[None, :]).astype(int) - (xa[:, None] < xa[None, :])
    sy = (ya[:, None] > ya[None, :]).astype(int) - (ya[:, None] < ya[None, :])
    n = len(xa)
    return float((sx * sy).sum() / (n * (n - 1)))


def _axis_of(setting: str) -> str:
    """Model name and options are one axis ("model"), likewise the dataset; train settings stand alone."""
    head = setting.split(".", 1)[0]
    return head if head in ("model", "dataset") else setting


def suite_axes(runs: Sequence[ScoredRun]) -> dict[str, dict[str, tuple]]:
    """The axes of Ψ that vary in ``runs``: axis name -> run key -> that run's value on the axis.

    ``randomization`` (kind with p), ``model`` and ``dataset`` (name and options), and the
    training settings that vary, where settings inducing the same partition of the runs (they
    only ever change together) are one axis named ``a+b``.
    """
    by_axis: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for name, value in r.settings:
            by_axis[_axis_of(name)][r.key].append((name, value))
    values: dict[str, dict[str, tuple]] = {}
    for axis, per_run in by_axis.items():
        col = {r.key: tuple(sorted(per_run.get(r.key, ()))) for r in runs}
        if len(set(col.values())) > 1:
            values[axis] = col
    # Merge axes that change together: same partition of the runs.
    merged: dict[tuple, list[str]] = defaultdict(list)
    for axis, col in values.items():
        labels: dict[tuple, int] = {}
        partition = tuple(labels.setdefault(col[r.key], len(labels)) for r in runs)
        merged[partition].append(axis)
    axes = {}
    for names in merged.values():
        names = sorted(names)
        axes["+".join(n.removeprefix("train.") for n in names)] = {
            r.key: tuple(values[n][r.key] for n in names) for r in runs
        }
    kinds = {r.key: (r.kind(),) for r in runs}
    if len(set(kinds.values())) > 1:
        axes[RANDOMIZATION_AXIS] = kinds
    return dict(sorted(axes.items()))


def granulated_consistency(
    runs: Sequence[ScoredRun], mu: Mapping[str, float], axes: Mapping[str, Mapping[str, tuple]] | None = None
) -> tuple[float | None, dict[str, float | None]]:
    """Jiang et al.'s Ψ and its ψ per axis over the runs with a value (module docstring);
    ``axes`` defaults to :func:`suite_axes` of ``runs``."""
    have = [r for r in runs if r.key in mu]
    axes = suite_axes(runs) if axes is None else axes
    by_axis: dict[str, float | None] = {}
    for axis in axes:
        others = [a for a in axes if a != axis]
        groups: dict[tuple, list[ScoredRun]] = defaultdict(list)
        for r in have:
            groups[(r.seed, *(axes[a][r.key] for a in others))].append(r)
        taus = [kendall_tau_a([mu[r.key] for r in g], [r.gap for r in g]) for g in groups.values() if len(g) >= 2]
        by_axis[axis] = float(np.mean(taus)) if taus else None
    defined = [v for v in by_axis.values() if v is not None]
    return (float(np.mean(defined)) if defined else None), by_axis


# -- bootstrap -----------------------------------------------------------------------------------------

def _percentile_interval(samples: np.ndarray) -> tuple[float, float] | None:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    lo, hi = np.percentile(samples, CI_PERCENTILES)
    return float(lo), float(hi)


def _auroc_bootstrap(
    runs: Sequence[ScoredRun],
    mu: Mapping[str, float],
    rand_runs: list[ScoredRun],
    nat_runs: list[ScoredRun],
    comparisons: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> tuple[float, float] | None:
    """Percentile interval of the AUROC when the seeds are resampled (a description of the
    spread over seeds; with two or three seeds it is their range, see the module docstring)."""
    seeds = sorted({r.seed for r in runs if r.key in mu})
    if n_boot == 0 or not seeds or comparisons is None:
        return None
    index = {s: i for i, s in enumerate(seeds)}
    n_seeds = len(seeds)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    # counts[b, s]: how many times resample b drew seed s (its weight, multiplicity included).
    flat = (draws + n_seeds * np.arange(n_boot)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_seeds).reshape(n_boot, n_seeds).astype(float)
    w_rand = counts[:, [index[r.seed] for r in rand_runs]]
    w_nat = counts[:, [index[r.seed] for r in nat_runs]]
    num = np.einsum("bi,ij,bj->b", w_rand, comparisons, w_nat)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _percentile_interval(num / (w_rand.sum(axis=1) * w_nat.sum(axis=1)))


# -- verdict -------------------------------------------------------------------------------------------

def _verdict(
    sign_error: float | None,
    ci: tuple[float, float] | None,
    n_effective: float,
    n_seeds: int,
    n_pairs: int,
    loss2: list[int],
    n_ties: int,
    n_undecided: int,
    n_gap_ties: int,
    n_unresolved: int,
    errors: int,
    n_runs: int,
) -> tuple[str, str]:
    if errors or not n_pairs:
        if errors:
            reason = f"errored on {errors} of {_plural(n_runs, 'run')}"
            return "error", reason + ("; no pair could be scored" if not n_pairs else "")
        if n_gap_ties and not n_unresolved:
            return "error", f"every pair has equal gaps ({n_gap_ties}): nothing to order"
        if n_unresolved:
            return "error", (f"no pair has gaps that the test sets resolve ({n_gap_ties} equal, {n_unresolved} "
                             f"closer than the test sets can tell apart): nothing to order")
        return "error", "no natural/randomized pair to score"
    assert sign_error is not None
    sep, inv, chance = (THRESHOLDS["separates_max_sign_error"], THRESHOLDS["inverts_min_sign_error"],
                        THRESHOLDS["chance_sign_error"])
    # Undecided pairs count ½ in loss2 like ties, but are neither right nor wrong.
    right = sum(1 for l2 in loss2 if l2 == 0)
    wrong = sum(1 for l2 in loss2 if l2 == 2)
    extras = []
    if n_ties:
        extras.append(f"ties {n_ties}")
    if n_undecided:
        extras.append(f"{n_undecided} of {_plural(n_pairs, 'pair')} undecided within the measures' noise")
    if n_unresolved:
        extras.append(f"{_plural(n_unresolved, 'pair')} with gaps closer than the test sets resolve left out")
    if n_gap_ties:
        extras.append(f"{_plural(n_gap_ties, 'pair')} with equal gaps left out")

    if n_ties == n_pairs:
        counts = ", ".join([f"ties every pair ({n_ties} of {n_pairs})"] + extras[1:])
    elif sign_error > 0.5:  # mostly inverted: lead with that
        counts = ", ".join([f"inverts {wrong} of {_plural(n_pairs, 'pair')}"]
                           + ([f"orders {right} like the gap"] if right else []) + extras)
    else:
        counts = ", ".join([f"orders {right} of {_plural(n_pairs, 'pair')} like the gap"]
                           + ([f"inverts {wrong}"] if wrong else []) + extras)

    if n_seeds < THRESHOLDS["min_seeds"]:
        return INCONCLUSIVE, (f"{counts}; sign-error {sign_error:.2f} from {_plural(n_seeds, 'seed')}: "
                              f"one trained network per setting is not a finding: add seeds")
    if ci is None:
        return INCONCLUSIVE, f"{counts}; sign-error {sign_error:.2f} without an interval: add seeds"
    lo, hi = ci
    interval = f"95 % interval [{lo:.2f}, {hi:.2f}] from {n_effective:.1f} effective pairs"
    if hi <= sep:
        return SEPARATES, counts
    if lo >= inv:
        return INVERTS, counts
    if sep < lo and hi < inv:
        if hi < chance:
            return UNRELIABLE, f"{counts}: sign-error {sign_error:.2f}, {interval}, lies between {sep:g} and {chance:g}"
        if n_ties == n_pairs:
            return CHANCE, counts
        return CHANCE, f"{counts}: sign-error {sign_error:.2f}, {interval}, reaches {chance:g} or beyond"
    edge = f"{sep:g}" if lo <= sep else f"{inv:g}"
    return INCONCLUSIVE, f"{counts}: sign-error {sign_error:.2f}, but its {interval} reaches {edge}: add pairs"


def consistent_with(expected: str, sign_error: float | None, ci: tuple[float, float] | None) -> bool:
    """Whether a sample too small for a verdict still agrees with ``expected``: the point estimate
    lies in the range that verdict claims and the interval does not exclude that range. This is
    what ``gentest check`` asks of an ``inconclusive`` measure on its tiny suite (a handful of
    pairs cannot bring a 95 % interval under 0.1: that takes about 36 effective pairs)."""
    if expected not in CLAIMED_SIGN_ERROR or sign_error is None:
        return False
    lo, hi = CLAIMED_SIGN_ERROR[expected]
    if expected == SEPARATES:
        inside = sign_error <= hi
    elif expected == INVERTS:
        inside = sign_error >= lo
    else:
        inside = lo < sign_error < hi
    if expected == CHANCE and ci is not None:
        inside = inside and ci[1] >= THRESHOLDS["chance_sign_error"]
    overlaps = ci is None or (ci[0] <= hi and ci[1] >= lo)
    return bool(inside and overlaps)


def claims_contradict(a: str, b: str) -> bool:
    """Two verdicts contradict each other when the sign-error ranges they claim do not overlap
    (``separates`` against ``unreliable``, say); ``unreliable`` and ``chance`` overlap on (0.1, 0.5):
    one excludes 0.5 and the other does not, which is a refinement, not a contradiction."""
    if a not in CLAIMED_SIGN_ERROR or b not in CLAIMED_SIGN_ERROR:
        return False
    (lo_a, hi_a), (lo_b, hi_b) = CLAIMED_SIGN_ERROR[a], CLAIMED_SIGN_ERROR[b]
    # The ranges are closed at 0.1 for separates and at 0.9 for inverts, open elsewhere.
    return hi_a <= lo_b or hi_b <= lo_a


# -- all measures and the controls -----------------------------------------------------------------

def score_all(
    measures: list[tuple[str, str, str]],
    runs: list[ScoredRun],
    values_by_measure: dict[str, dict[str, float | None]],
    n_boot: int = 1000,
    seed: int = 0,
    not_applicable_by_measure: Mapping[str, Mapping[str, str]] | None = None,
    uncertainties_by_measure: Mapping[str, Mapping[str, object]] | None = None,
) -> list[MeasureScore]:
    """Score every ``(name, family, orientation)``; best first.

    Sorted by verdict (separates, inverts, inconclusive, fails, error, n/a), then by the robust
    score: worst-environment sign-error, then mean sign-error (none last), then name. A measure
    missing from ``values_by_measure`` errored on every run.
    """
    scores = [
        score_measure(
            name, family, orientation, runs, values_by_measure.get(name, {}), n_boot=n_boot, seed=seed,
            not_applicable=(not_applicable_by_measure or {}).get(name),
            uncertainties=(uncertainties_by_measure or {}).get(name),
        )
        for name, family, orientation in measures
    ]
    return sorted(scores, key=_rank)


def robust_key(s: MeasureScore) -> tuple[float, float, str]:
    """Dziugaite et al.'s robust order: worst-environment sign-error, then mean; None last."""
    worst = s.worst_env_sign_error if s.worst_env_sign_error is not None else math.inf
    mean = s.sign_error if s.sign_error is not None and math.isfinite(s.sign_error) else math.inf
    return (worst, mean, s.name)


def _rank(s: MeasureScore) -> tuple:
    return (VERDICTS.index(s.verdict), *robust_key(s))


def _error_phrase(s: MeasureScore) -> str:
    return f"{s.name} " + (s.reason if s.reason.startswith("errored") else f"has {s.reason}")


BROKEN = "so the suite, not the measures, is broken."
NOT_EVALUATED = "nothing has been evaluated yet: the store holds runs but no measure values (run gentest evaluate)."


def controls_ok(scores: list[MeasureScore]) -> tuple[bool, str]:
    """Check the built-in controls; ``(True, "")`` or ``(False, one sentence why)``.

    ``control.gap`` must have sign-error exactly 0 (it orders every pair like the gap) and no
    environment may have equal gaps on every pair; ``control.param_count`` must tie every pair
    (``n_ties == n_pairs > 0``). Otherwise the suite is broken. The sentence ends with the conclusion; callers print it as it is.
    """
    by_name = {s.name: s for s in scores}
    missing: list[str] = []
    broken: list[str] = []

    gap = by_name.get(CONTROL_GAP)
    if gap is None:
        missing.append(f"{CONTROL_GAP} was not evaluated")
    elif gap.gap_tied_envs:
        # One pair with equal gaps is chance (accuracies are discrete); every pair of an
        # environment is a randomization that changed nothing.
        broken.append(f"every pair of {gap.gap_tied_envs[0]} has equal gaps (does its randomization change the data?)")
    elif gap.verdict == "error":
        broken.append(_error_phrase(gap))
    elif not (gap.sign_error == 0 and gap.n_pairs > 0):
        broken.append(f"{CONTROL_GAP} has sign-error {gap.sign_error:.3g} instead of 0 ({gap.reason})")

    pc = by_name.get(CONTROL_PARAM_COUNT)
    if pc is None:
        missing.append(f"{CONTROL_PARAM_COUNT} was not evaluated")
    elif pc.verdict == "error":
        broken.append(_error_phrase(pc))
    elif not (pc.n_pairs > 0 and pc.n_ties == pc.n_pairs):
        broken.append(
            f"{CONTROL_PARAM_COUNT} differs between twins in {pc.n_pairs - pc.n_ties} of "
            f"{_plural(pc.n_pairs, 'pair')} (twins must share the architecture)"
        )

    if broken:
        return False, "; ".join(broken + missing) + ", " + BROKEN
    if missing:
        return False, "; ".join(missing) + ", so nothing checks that the suite itself is sound."
    return True, ""
