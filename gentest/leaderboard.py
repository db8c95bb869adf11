"""The leaderboard: what one evaluation produced, as the reports and the JSON interface see it.

``leaderboard.json`` is the machine interface; these keys are stable (DESIGN.md):

    {"schema_version", "suite", "gentest_version",
     "runs": [{"key", "dataset", "model", "randomization", "p", "seed",
               "train_acc", "test_acc", "gap", "steps_to_fit", "wall_s"}],
     "measures": [{"name", "family", "orientation", "n_pairs", "sign_error",
                   "worst_env_sign_error", "auroc", "kendall_tau", "verdict", "errors"}],
     "controls_ok": bool}

Extra keys may be added next to them; none of these is renamed or removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gentest.values import MeasureValue  # re-exported: `from gentest.leaderboard import MeasureValue` keeps working

# 1: sign-error over pairs with different gaps, bootstrap over seeds, verdict "fails".
# 2: weighted pairs and ESS (Dziugaite et al.), Clopper–Pearson intervals, CMI (Jiang et al.),
#    verdicts "unreliable" and "chance" in place of "fails".
SCHEMA_VERSION = 2
RUN_KEYS = ("key", "dataset", "model", "randomization", "p", "seed", "train_acc", "test_acc", "gap", "steps_to_fit", "wall_s")
MEASURE_KEYS = (
    "name", "family", "orientation", "n_pairs", "sign_error", "worst_env_sign_error", "auroc", "kendall_tau", "verdict", "errors",
)


@dataclass
class MeasureScore:
    """How one measure did over all natural/randomized pairs of a suite (see gentest.scoring)."""

    name: str
    family: str
    orientation: str  # "higher-worse" or "higher-better"
    n_pairs: int  # pairs with a value on both twins
    sign_error: float | None  # weighted mean over pairs (Dziugaite's weights); None when no pair could be scored
    sign_error_ci: tuple[float, float] | None  # 95 % Clopper–Pearson interval on effective counts
    worst_env_sign_error: float | None  # over the environments with ESS >= min_env_ess; None if none
    worst_env: str | None
    env_sign_errors: dict[str, float]  # weighted, every environment with a positive weight
    auroc: float | None  # oriented measure as a classifier of randomized (positive) vs natural runs
    auroc_ci: tuple[float, float] | None
    kendall_tau: float | None  # tau-b of the oriented measure against the gap, where p is swept
    verdict: str  # "separates", "inverts", "inconclusive", "unreliable", "chance", "error" or "n/a"
    errors: int  # runs on which the measure errored
    n_ties: int = 0  # pairs where the measure gave both twins the same value
    reason: str = ""  # why the verdict is what it is, in words
    n_undecided: int = 0  # pairs whose difference is within the measure's recorded noise
    n_seeds: int = 0  # distinct seeds among the scored pairs
    env_kendall_tau: dict[str, float | None] = field(default_factory=dict)  # tau-b per environment with a sweep
    psi: float | None = None  # Jiang et al.'s granulated consistency over the suite's axes
    psi_by_axis: dict[str, float | None] = field(default_factory=dict)
    n_gap_ties: int = 0  # pairs left out because the twins' gaps are equal (nothing to order)
    gap_tied_envs: list[str] = field(default_factory=list)  # environments where every pair's gaps are equal
    sign_error_unweighted: float | None = None  # every pair with different gaps counts 1 (schema 1's sign-error)
    n_effective: float = 0.0  # effective pairs behind the interval (Kish ESS / design effect)
    design_effect: float | None = None  # 1 + (m - 1) rho for pairs clustered by their natural twin
    n_unresolved: int = 0  # pairs of weight 0: gaps closer than the test sets can resolve
    env_ess: dict[str, float] = field(default_factory=dict)  # effective sample size (Σw)²/Σw² per environment
    envs_left_out: list[str] = field(default_factory=list)  # environments under min_env_ess: shown, not in the worst case
    worst_env_any: str | None = None  # the worst environment counting the thin ones too
    worst_env_any_sign_error: float | None = None
    env_quantiles: dict[str, float | None] = field(default_factory=dict)  # mean, p90, max over kept environments
    cmi: float | None = None  # Jiang et al.'s K: min over |S| <= 2 of the normalized CMI
    cmi_set: str | None = None  # the conditioning set that attains K
    cmi_by_set: dict[str, float | None] = field(default_factory=dict)
    cmi_pgdl: float | None = None  # the PGDL competition's variant

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("sign_error_ci", "auroc_ci"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d


@dataclass
class Leaderboard:
    suite: str
    gentest_version: str
    runs: list[dict[str, Any]]  # Run.row() of every run, RUN_KEYS among their keys
    curves: dict[str, list[dict[str, Any]]]  # run key -> learning curve (one row per epoch)
    measures: list[MeasureScore]  # sorted best first
    values: list[MeasureValue]  # every stored value (none: nothing has been evaluated yet)
    controls_ok: bool
    controls_message: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    measure_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> Measure.info()
    # How the report was made: command, versions, platform, CPU, threads (gentest.reports.provenance).
    provenance: dict[str, Any] = field(default_factory=dict)
    # Every natural/randomized pair with its weight (gentest.scoring.pair_weights).
    pair_weights: list[dict[str, Any]] = field(default_factory=list)
    # What a re-scored report keeps from the report it read, where the CSVs cannot rebuild it
    # (learning curves): "table1" rows and pre-rendered figures, file name -> (caption, PNG).
    carried: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluated(self) -> bool:
        """Whether any measure value (or error) is stored: a store can hold runs and nothing else."""
        return bool(self.values) or bool(self.measures)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "suite": self.suite,
            "gentest_version": self.gentest_version,
            "runs": self.runs,
            "measures": [m.to_json() for m in self.measures],
            "controls_ok": self.controls_ok,
            "controls_message": self.controls_message,
            "thresholds": self.thresholds,
            "evaluated": self.evaluated,
            "provenance": self.provenance,
            "pairs": self.pair_weights,
        }
