"""The evaluate flow: train what is missing, measure what is missing, score, build the board.

    suite ──> RunSpecs ──train (missing only)──> runs ──evaluate (missing only)──> values
          ──pair natural ↔ randomized──> scores ──> Leaderboard ──> reports
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch

import gentest
from gentest.evaluation import EvaluationProgress, evaluate
from gentest.leaderboard import Leaderboard, MeasureValue
from gentest.registry import Measure, all_measures, select
from gentest.runner import DataCache, Progress, train_missing
from gentest.scoring import NOT_EVALUATED, THRESHOLDS, ScoredRun, controls_ok, recorded_uncertainty, score_all
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


def _settings(spec: RunSpec) -> dict[str, object]:
    """Every setting but randomization and seed: dataset and model with their options, training."""
    d = spec.to_dict()
    flat: dict[str, object] = {"dataset": d["dataset"]}
    flat |= {f"dataset.{k}": v for k, v in d["dataset_args"].items()}
    flat["model"] = d["model"]
    flat |= {f"model.{k}": v for k, v in d["model_args"].items()}
    flat |= {f"train.{k}": v for k, v in d["train"].items()}
    return flat


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value


def environment_names(specs: list[RunSpec]) -> dict[str, str]:
    """Readable environment per run key: dataset/model plus the settings that vary in the suite.

    An environment (Dziugaite et al. 2020) is one architecture × training setting; scoring adds
    the randomization kind. Settings equal across the suite are left out of the name, and so is
    a setting this run does not have (a CNN has no ``hidden``); a setting is named without its
    ``model.``/``dataset.``/``train.`` prefix unless two varying settings would then share a
    name, e.g. ``mnist1d/mlp hidden=[512,512,512] weight_decay=0.0005``.
    """
    all_settings = {s.key: _settings(s) for s in specs}
    keys = {k for s in all_settings.values() for k in s}
    varying = sorted(
        k for k in keys - {"dataset", "model"}
        if len({json.dumps(s.get(k), sort_keys=True) for s in all_settings.values()}) > 1
    )
    short = {k: k.split(".", 1)[1] for k in varying}
    clash = {n for n in short.values() if list(short.values()).count(n) > 1}
    label = {k: (short[k] if short[k] not in clash else k) for k in varying}
    names = {}
    for spec in specs:
        mine = all_settings[spec.key]
        extra = " ".join(f"{label[k]}={_compact(mine[k])}" for k in varying if k in mine)
        names[spec.key] = f"{spec.dataset}/{spec.model}" + (f" {extra}" if extra else "")
    return names


def run_settings(spec: RunSpec) -> tuple[tuple[str, str], ...]:
    """The settings of a run as scoring's axes see them: (name, canonical JSON) pairs."""
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in _settings(spec).items()))


def _run_row(run: Run, environment: str) -> dict[str, object]:
    """Run.row() plus what tells runs apart: environment, options and training settings."""
    d = run.spec.to_dict()
    row = dict(run.row())
    row.setdefault("environment", environment)
    row.setdefault("pair_key", run.spec.pair_key)
    row.setdefault("dataset_args", d["dataset_args"])
    row.setdefault("model_args", d["model_args"])
    for k, v in d["train"].items():
        row.setdefault(f"train.{k}", v)
    # Where it was trained, as the store records it (CPU float results depend on these).
    for k in ("torch_threads", "cpu_capability", "cpu"):
        if (run.versions or {}).get(k) is not None:
            row.setdefault(k, run.versions[k])
    return row


def build_leaderboard(suite_name: str, runs: list[Run], measures: list[Measure], values: list[MeasureValue | None]) -> Leaderboard:
    """Score the values of ``measures`` on ``runs`` and assemble the board.

    With no value at all (a store that holds runs but was never evaluated) the board has the
    runs and no scores, and says that nothing has been evaluated yet rather than that the
    controls failed.
    """
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
            settings=run_settings(r.spec),
        )
        for r in runs
    ]
    present = [v for v in values if v is not None]
    by_measure: dict[str, dict[str, float | None]] = {m.name: {} for m in measures}
    not_applicable: dict[str, dict[str, str]] = {m.name: {} for m in measures}
    uncertainties: dict[str, dict[str, object]] = {m.name: {} for m in measures}
    for v in present:
        if v.measure in by_measure:
            by_measure[v.measure][v.run_key] = v.value
            if v.not_applicable:
                not_applicable[v.measure][v.run_key] = v.error or "does not apply"
            u = recorded_uncertainty(v.extra)
            if u is not None and v.value is not None:
                uncertainties[v.measure][v.run_key] = u
    if present:
        scores = score_all(
            [(m.name, m.family, m.orientation) for m in measures], scored_runs, by_measure,
            not_applicable_by_measure=not_applicable, uncertainties_by_measure=uncertainties,
        )
        ok, message = controls_ok(scores)
    else:
        scores, ok, message = [], False, NOT_EVALUATED
    return Leaderboard(
        suite=suite_name,
        gentest_version=gentest.__version__,
        runs=[_run_row(r, envs[r.key]) for r in runs],
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
