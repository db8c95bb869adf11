"""The leaderboard: what one evaluation produced, as the reports and the JSON interface see it.

``leaderboard.json`` is the machine interface; these keys are stable (DESIGN.md):

    {"suite", "gentest_version",
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
    sign_error: float | None  # mean over pairs; None when no pair could be scored
    sign_error_ci: tuple[float, float] | None  # 95 % bootstrap interval over seeds
    worst_env_sign_error: float | None
    worst_env: str | None
    env_sign_errors: dict[str, float]
    auroc: float | None  # oriented measure as a classifier of randomized (positive) vs natural runs
    auroc_ci: tuple[float, float] | None
    kendall_tau: float | None  # tau-b of the oriented measure against the gap, where p is swept
    verdict: str  # "separates", "inverts", "fails", "error" or "n/a" (does not apply)
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

    @property
    def evaluated(self) -> bool:
        """Whether any measure value (or error) is stored: a store can hold runs and nothing else."""
        return bool(self.values) or bool(self.measures)

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "gentest_version": self.gentest_version,
            "runs": self.runs,
            "measures": [m.to_json() for m in self.measures],
            "controls_ok": self.controls_ok,
            "controls_message": self.controls_message,
            "thresholds": self.thresholds,
            "evaluated": self.evaluated,
            "provenance": self.provenance,
        }
