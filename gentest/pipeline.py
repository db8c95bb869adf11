"""The evaluate flow: train what is missing, measure what is missing, score, build the board.

    suite ──> RunSpecs ──train (missing only)──> runs ──evaluate (missing only)──> values
          ──pair natural ↔ randomized──> scores ──> Leaderboard ──> reports
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

import gentest
from gentest.errors import GentestError
from gentest.evaluation import EvaluationProgress, evaluate
from gentest.executors import GridDisplay, UnitResult, WorkUnit
from gentest.leaderboard import Leaderboard, MeasureValue
from gentest.registry import Measure, all_measures, select
from gentest.runner import DataCache, Progress, train_missing
from gentest.scoring import NOT_EVALUATED, THRESHOLDS, ScoredRun, controls_ok, pair_weights, recorded_uncertainty, score_all
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


def test_size(run: Run) -> int | None:
    """How many test points the run's gap was measured on: as recorded at training, else the
    suite's ``test_size`` option, else the registered dataset's whole test split; None when
    unknown (a dataset registered without ``test_points``). Scoring weights pairs by it."""
    recorded = run.metrics.get("n_test")
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    return declared_test_size(run.spec.dataset, run.spec.to_dict()["dataset_args"])


def declared_test_size(dataset: str, dataset_args: dict[str, object]) -> int | None:
    """The test-set size a dataset with these options has, without loading it."""
    from gentest.datasets import DATASETS, dataset_info

    try:  # the vision datasets register on first use, importing torchvision: only when needed
        info = DATASETS.get(dataset) or dataset_info(dataset)
    except GentestError:  # not registered here (a report from elsewhere): unknown
        info = None
    whole = info.test_points if info is not None else None
    cut = dataset_args.get("test_size")
    if isinstance(cut, int) and cut > 0:
        return min(cut, whole) if whole else cut
    return whole


def described_rows(runs: list[Run]) -> list[dict[str, object]]:
    """One row per run that tells runs apart by everything that differs (``environment``: dataset,
    model and the settings that vary among ``runs``; options and training settings as columns),
    in a stable order: environment, randomization, p, seed."""
    names = environment_names([r.spec for r in runs])
    rows = [_run_row(run, names[run.key]) for run in runs]
    return sorted(rows, key=lambda r: (str(r["environment"]), r["randomization"] != "none", str(r["randomization"]),
                                       r["p"], r["seed"], r.get("replace_k") or 0))


def _run_row(run: Run, environment: str) -> dict[str, object]:
    """Run.row() plus what tells runs apart: environment, options and training settings."""
    d = run.spec.to_dict()
    row = dict(run.row())
    row.setdefault("environment", environment)
    row.setdefault("n_test", test_size(run))
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
            randomization=r.spec.randomization_name,
            p=r.spec.p,
            seed=r.spec.seed,
            gap=r.metrics["gap"],
            environment=envs[r.key],
            settings=run_settings(r.spec),
            n_test=test_size(r),
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
        pair_weights=pair_weights(scored_runs),
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


@dataclass
class GridPlan:
    """How a grid runs: which executor, how many workers with how many threads, which device;
    built from the command line and checked before any work starts."""

    executor: str
    devices: list[str]  # one entry per pool worker
    threads: int | None
    store: str
    data_root: str | None = None
    download: bool = False
    plugins: tuple[str, ...] = ()
    measures: list[Measure] = field(default_factory=list)
    slurm: "SlurmOptions | None" = None
    wait: bool = True

    @classmethod
    def from_options(cls, executor: str, jobs: str | int, threads: int | None, device: str, store: str,
                     data_root: str | None = None, download: bool = False, plugins: Iterable[str] = (),
                     measures: list[Measure] | None = None, slurm: dict[str, Any] | None = None,
                     runs_per_job: int | None = None, wait: bool = True) -> "GridPlan":
        from gentest.devices import resolve_device
        from gentest.errors import GentestError
        from gentest.executors import EXECUTORS
        from gentest.executors.pool import cpu_count

        if executor not in EXECUTORS:
            raise GentestError(f"unknown executor '{executor}'; choose one of {', '.join(EXECUTORS)}")
        slurm = {k: v for k, v in (slurm or {}).items() if v not in (None, [], False)}
        cluster = executor in ("slurm", "submitit-local")
        if not cluster and (slurm or runs_per_job is not None or not wait):
            given = ["--slurm-" + k.replace("_", "-") for k in slurm]
            given += ["--runs-per-job"] * (runs_per_job is not None) + ["--no-wait"] * (not wait)
            raise GentestError(f"{', '.join(given)} only apply with --executor slurm or submitit-local")
        if cluster and jobs != "auto":
            raise GentestError("--jobs applies to the pool executor; with Slurm use --slurm-array-parallelism")
        if threads is not None and threads < 1:
            raise GentestError(f"--threads must be at least 1, not {threads}")
        if runs_per_job is not None and runs_per_job < 1:
            raise GentestError(f"--runs-per-job must be at least 1, not {runs_per_job}")
        if cluster:
            from gentest.executors.cluster import SlurmOptions, _submitit, parse_params, require_slurm

            # Malformed options first, then what the machine lacks, all before the suite is planned.
            options = SlurmOptions(runs_per_job=runs_per_job or 1, params=parse_params(slurm.pop("param", [])))
            if executor == "slurm":
                require_slurm()
            _submitit()
            for name, attr in (("partition", "partition"), ("time", "time_min"), ("gpus_per_job", "gpus_per_job"),
                               ("cpus_per_job", "cpus_per_job"), ("array_parallelism", "array_parallelism"),
                               ("account", "account"), ("qos", "qos")):
                if name in slurm:
                    setattr(options, attr, slurm[name])
            for attr in ("time_min", "array_parallelism"):
                if getattr(options, attr) < 1:
                    raise GentestError(f"--slurm-{attr.replace('_min', '').replace('_', '-')} must be at least 1")
            # Cluster jobs pick their own device: "auto" there means the GPU Slurm gave them.
            dev = device if device != "auto" else ("cuda" if options.gpus_per_job else "cpu")
            return cls(executor, [dev], threads if threads is not None else options.cpus_per_job, str(store),
                       data_root, download, tuple(_absolute(plugins)), list(measures or []), options, wait)

        resolved = resolve_device(device)
        threads = threads if threads is not None else 1
        if resolved.type == "cuda":
            gpus = torch.cuda.device_count()
            n = gpus if jobs == "auto" else _jobs(jobs)
            devices = [f"cuda:{i % gpus}" for i in range(n)]
        else:
            n = max(1, cpu_count() // threads) if jobs == "auto" else _jobs(jobs)
            if resolved.type == "mps":
                n = 1 if jobs == "auto" else n
            devices = [str(resolved)] * n
        return cls("pool", devices, threads, str(store), data_root, download, tuple(_absolute(plugins)),
                   list(measures or []))

    def executor_instance(self):
        if self.executor == "pool":
            from gentest.executors.pool import PoolExecutor

            return PoolExecutor(self.devices, self.threads, timeouts={m.name: m.timeout_s for m in self.measures},
                                versions={m.name: m.version for m in self.measures})
        from gentest.executors.cluster import SubmititExecutor

        return SubmititExecutor(Path(self.store) / "submitit", self.slurm, local=self.executor == "submitit-local",
                                wait=self.wait)


def _jobs(jobs: str | int) -> int:
    from gentest.errors import GentestError

    try:
        n = int(jobs)
    except (TypeError, ValueError):
        raise GentestError(f"--jobs takes a number of workers or 'auto', not '{jobs}'") from None
    if n < 1:
        raise GentestError(f"--jobs must be at least 1 (or 'auto'), not {n}")
    return n


def _absolute(paths: Iterable[str | Path]) -> list[str]:
    return [str(Path(p).absolute()) for p in paths]


@dataclass
class GridOutcome:
    results: list[UnitResult]
    job_ids: list[str]
    waited: bool

    @property
    def failures(self) -> list[UnitResult]:
        return [r for r in self.results if r.status == "failed"]


def plan_units(specs: Iterable[RunSpec], measures: list[Measure], store: RunStore, plan: GridPlan) -> list[WorkUnit]:
    """One unit per run that lacks something: its training, or one of the measures' values."""
    plugins, modules = measure_sources(measures, plan.plugins)
    units = []
    for spec in specs:
        if spec.key in store and all(store.get_value(spec.key, m.name, m.version) is not None for m in measures):
            continue
        units.append(WorkUnit(
            spec=spec.to_dict(), key=spec.key, label=spec.label(), store=str(Path(plan.store).absolute()),
            measures=tuple(m.name for m in measures), plugins=plugins, modules=modules, device=plan.devices[0],
            threads=plan.threads, data_root=plan.data_root, download=plan.download,
        ))
    return units


def measure_sources(measures: list[Measure], plugins: Iterable[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a worker process must load to find ``measures`` as the parent registered them: plug-in
    files and importable modules (entry points it loads by itself). A measure defined in a script
    run as ``__main__`` cannot be found from another process: one sentence saying so."""
    from gentest.errors import GentestError

    files, mods = list(plugins), []
    for m in measures:
        if m.source.startswith("plugin "):
            files.append(m.source.removeprefix("plugin "))
        elif m.source.startswith("module "):
            module = m.source.removeprefix("module ")
            if module == "__main__":
                raise GentestError(f"measure '{m.name}' is defined in the script being run (__main__), which worker "
                                   "processes cannot import; put it in a file and pass it with --plugin")
            mods.append(module)
    return tuple(dict.fromkeys(files)), tuple(dict.fromkeys(mods))


def run_grid(specs: Iterable[RunSpec], measures: list[Measure], store: RunStore, plan: GridPlan,
             display: GridDisplay | None = None) -> GridOutcome:
    """Train and measure what the store lacks, on ``plan``'s executor; everything lands in the
    store. Missing data is found here, before any work goes out."""
    from gentest.executors.status import clear_failure, record_failure

    specs = list(specs)
    store.clean_debris()
    units = plan_units(specs, measures, store, plan)
    data = DataCache(plan.data_root, plan.download)
    from gentest.datasets import dataset_info

    for spec in specs:  # fail on missing data, or a learner that cannot fit, before any training starts
        if spec.key not in store and not dataset_info(spec.dataset).generated:
            data.get(spec)
        if spec.key not in store and spec.learner != "sgd":
            from gentest.learners import preflight

            preflight(spec, len(data.get(spec).y_train))
    display = display or GridDisplay()
    stored = sum(s.key in store for s in specs)
    display.note(f"{len(specs)} runs in the suite, {stored} already stored, {len(specs) - stored} to train")
    if measures:
        total = len(specs) * len(measures)
        cached = sum(store.get_value(s.key, m.name, m.version) is not None for s in specs if s.key in store for m in measures)
        display.note(f"{total} measure values, {cached} cached, {total - cached} to compute")
    if units and plan.executor == "pool":
        n, t = len(plan.devices), plan.threads
        display.note(f"{n} {'worker' if n == 1 else 'workers'} on {plan.devices[0].split(':')[0]}, "
                     f"{t} torch {'thread' if t == 1 else 'threads'} each")
    executor = plan.executor_instance()
    with display if hasattr(display, "__enter__") else contextlib.nullcontext():
        results = executor.run(units, display)
    for r in results:
        if r.status == "failed":
            record_failure(store.root, r)
        else:
            clear_failure(store.root, r.key)
    return GridOutcome(results, list(getattr(executor, "job_ids", [])), waited=plan.wait)


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
