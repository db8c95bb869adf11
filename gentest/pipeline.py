"""The evaluate flow: train what is missing, measure what is missing, score, build the board.

    suite ──> RunSpecs ──train (missing only)──> runs ──evaluate (missing only)──> values
          ──pair natural ↔ randomized──> scores ──> Leaderboard ──> reports
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

import gentest
from gentest.evaluation import EvaluationProgress, evaluate
from gentest.leaderboard import Leaderboard, MeasureValue
from gentest.registry import Measure, all_measures, select
from gentest.runner import DataCache, Progress, train_missing
from gentest.scoring import THRESHOLDS, ScoredRun, controls_ok, score_all
from gentest.spec import RunSpec
from gentest.store import Run, RunStore
from gentest.suites import Suite

CONTROLS = ("control.gap", "control.param_count")


def choose_measures(
    names: Iterable[str] | None, suite: Suite | None = None, plugins: Iterable[str | Path] = ()
) -> list[Measure]:
    """``names`` if given, else the suite's list, else every registered measure; controls always."""
    available = all_measures(plugins)
    names = list(names or (suite.measures if suite is not None else ()) or available)
    names = [c for c in CONTROLS if c not in names] + names
    return select(names, available)


def evaluate_suite(
    suite: Suite,
    measures: list[Measure],
    store: RunStore,
    device: torch.device,
    data: DataCache | None = None,
    train_progress: Progress | None = None,
    eval_progress: EvaluationProgress | None = None,
) -> Leaderboard:
    data = data or DataCache()
    runs = train_missing(suite.specs, store, device, data, train_progress)
    values = evaluate(runs, measures, store, device, data, eval_progress)
    return build_leaderboard(suite.name, runs, measures, values)


def environment_names(specs: list[RunSpec]) -> dict[str, str]:
    """Readable environment per run key: dataset/model plus the settings that vary in the suite.

    An environment (Dziugaite et al. 2020) is one architecture × training setting; scoring adds
    the randomization kind. Settings equal across the suite are left out of the name.
    """

    def settings(spec: RunSpec) -> dict[str, object]:
        d = spec.to_dict()
        flat = {f"dataset.{k}": v for k, v in d["dataset_args"].items()}
        flat |= {f"model.{k}": v for k, v in d["model_args"].items()}
        flat |= d["train"]
        return flat

    all_settings = {s.key: settings(s) for s in specs}
    varying = sorted({k for s in all_settings.values() for k, v in s.items() if any(o.get(k) != v for o in all_settings.values())})
    names = {}
    for spec in specs:
        extra = " ".join(f"{k}={all_settings[spec.key].get(k)}" for k in varying)
        names[spec.key] = f"{spec.dataset}/{spec.model}" + (f" {extra}" if extra else "")
    return names


def build_leaderboard(suite_name: str, runs: list[Run], measures: list[Measure], values: list[MeasureValue | None]) -> Leaderboard:
    envs = environment_names([r.spec for r in runs])
    scored_runs = [
        ScoredRun(
            key=r.key,
            pair_key=r.spec.pair_key,
            randomization=r.spec.randomization,
            p=r.spec.p,
            seed=r.spec.seed,
            gap=r.metrics["gap"],
            environment=envs[r.key],
        )
        for r in runs
    ]
    present = [v for v in values if v is not None]
    by_measure: dict[str, dict[str, float | None]] = {m.name: {} for m in measures}
    not_applicable: dict[str, dict[str, str]] = {m.name: {} for m in measures}
    for v in present:
        if v.measure in by_measure:
            by_measure[v.measure][v.run_key] = v.value
            if v.not_applicable:
                not_applicable[v.measure][v.run_key] = v.error or "does not apply"
    scores = score_all(
        [(m.name, m.family, m.orientation) for m in measures], scored_runs, by_measure,
        not_applicable_by_measure=not_applicable,
    )
    ok, message = controls_ok(scores)
    return Leaderboard(
        suite=suite_name,
        gentest_version=gentest.__version__,
        runs=[r.row() for r in runs],
        curves={r.key: r.curve for r in runs},
        measures=scores,
        values=present,
        controls_ok=ok,
        controls_message=message,
        thresholds=dict(THRESHOLDS),
        measure_info={m.name: m.info() for m in measures},
    )


def stored_leaderboard(store: RunStore, suite: Suite | None, plugins: Iterable[str | Path] = ()) -> Leaderboard:
    """Re-score from the store alone: the suite's runs (or all runs) and every cached value
    of a registered measure; nothing is trained or computed."""
    keys = [s.key for s in suite.specs if s.key in store] if suite is not None else store.keys()
    # Stability retrains live in the store too, but they are measurements, not suite runs.
    runs = [run for run in map(store.load, keys) if not run.spec.replace_k]
    available = all_measures(plugins)
    measures = [m for m in available.values() if any(store.get_value(r.key, m.name, m.version) for r in runs)]
    values = [store.get_value(r.key, m.name, m.version) for r in runs for m in measures]
    return build_leaderboard(suite.name if suite is not None else "store", runs, measures, values)


# The suites a store holds runs of. A run does not record its suite (the same run can belong to
# several), so every command that trains a suite into a store keeps a copy of the suite file in
# ``<store>/suites/<name>.toml``; `gentest report` without a suite reports from those copies and
# never pairs runs across suites.


def remember_suite(store: RunStore, suite: Suite) -> None:
    """Keep a copy of ``suite``'s file in the store (atomically; a later suite of the same name
    replaces it, as its report replaces the report folder of that name)."""
    import os
    import re
    import uuid

    folder = store.root / "suites"
    folder.mkdir(parents=True, exist_ok=True)
    file_name = re.sub(r"[^\w.-]", "_", suite.name).lstrip(".") or "suite"
    staging = folder / f".{file_name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    staging.write_bytes(suite.path.read_bytes())
    os.replace(staging, folder / f"{file_name}.toml")


def stored_suites(store: RunStore) -> dict[str, Suite]:
    """The suites with at least one run in the store, by name: the copies the store keeps, and
    the built-in suites not among them (stores written before suites were kept)."""
    from gentest.suites import builtin_suites, load_suite

    suites = {s.name: s for s in map(load_suite, map(str, builtin_suites().values()))}
    folder = store.root / "suites"
    if folder.is_dir():
        suites |= {s.name: s for s in (load_suite(str(p)) for p in sorted(folder.glob("*.toml")))}
    return {name: s for name, s in sorted(suites.items()) if any(spec.key in store for spec in s.specs)}
