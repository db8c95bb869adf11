"""Progress on stderr: rich progress bars on a terminal, one plain line per run otherwise."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gentest.evaluation import EvaluationProgress
from gentest.executors import GridDisplay, UnitResult, WorkUnit
from gentest.leaderboard import MeasureValue
from gentest.runner import Progress as RunnerProgress
from gentest.spec import RunSpec
from gentest.store import Run


class TrainingProgress(RunnerProgress):
    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.total_task = self.run_task = None
        self.run_label = ""

    def __enter__(self) -> "TrainingProgress":
        if self.live:
            self.bars.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.bars.stop()

    def runs_planned(self, total: int, missing: int) -> None:
        self.console.print(f"{total} runs in the suite, {total - missing} already stored, {missing} to train")
        if self.live and missing:
            self.total_task = self.bars.add_task("runs", total=missing)

    def run_started(self, spec: RunSpec, max_epochs: int) -> None:
        if self.live:
            if self.run_task is not None:
                self.bars.remove_task(self.run_task)
            self.run_label = f"  {spec.label()} (epochs)"
            self.run_task = self.bars.add_task(self.run_label, total=max_epochs)

    def epoch_done(self, epoch: int, row: dict[str, Any]) -> None:
        if self.live and self.run_task is not None:
            acc = row.get("train_acc")  # absent from a stability retrain's rows (no curve kept)
            label = self.run_label if acc is None else f"{self.run_label} [train acc {acc:.3f}]"
            self.bars.update(self.run_task, completed=epoch, description=label)

    def run_finished(self, run: Run) -> None:
        m = run.metrics
        line = (
            f"trained {run.spec.label()}: train {100 * m['train_acc']:.1f}%, test {100 * m['test_acc']:.1f}%, "
            f"{m['epochs']} epochs, {m['wall_s']:.1f} s"
        )
        if self.live:
            self.bars.console.print(line)
            self.bars.advance(self.total_task)
        else:
            self.console.print(line)


class EvaluationBars(EvaluationProgress):
    """One bar over the (run, measure) values still to compute; errors are printed as they come."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        )
        self.task = None

    def __enter__(self) -> "EvaluationBars":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.task is not None:
            self.bars.stop()

    def planned(self, total: int, missing: int) -> None:
        self.console.print(f"{total} measure values, {total - missing} cached, {missing} to compute")
        if self.live and missing:
            self.bars.start()
            self.task = self.bars.add_task("measures", total=missing)

    def value_done(self, run: Run, value: MeasureValue) -> None:
        if value.error is not None:
            detail = escape(f"{value.measure} on {run.spec.label()}: {value.error}")
            self.console.print(f"[red]error[/red] {detail}", highlight=False)
        if self.task is not None:
            self.bars.advance(self.task)


class GridProgress(GridDisplay):
    """One display for a grid run by an executor: a bar over the runs (done / failed / running,
    with an ETA) and one line per worker saying what it is doing right now (the run and its
    epoch, or the measure in progress). Finished runs are printed above the bars as they land;
    the bars vanish when the grid is done. Off a terminal: one plain line per finished run."""

    def __init__(self, console: Console, verb: str = "ran"):
        self.console, self.verb = console, verb
        self.live = console.is_terminal
        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self.total = None
        self.workers: dict[str, Any] = {}
        self.counts = {"done": 0, "failed": 0, "running": 0}
        self.failures: list[UnitResult] = []
        self.max_epochs: dict[str, int] = {}

    def __enter__(self) -> "GridProgress":
        if self.live:
            self.bars.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.bars.stop()

    def _status(self) -> str:
        c = self.counts
        return f"done {c['done']} · failed {c['failed']} · running {c['running']}"

    def planned(self, units: list[WorkUnit], workers: int) -> None:
        if self.live and units:
            self.total = self.bars.add_task("runs", total=len(units), status=self._status())

    def note(self, message: str) -> None:
        self.console.print(escape(message), highlight=False)

    def _worker_line(self, worker: str, text: str, completed: float | None = None, total: float | None = None) -> None:
        if not self.live:
            return
        if worker not in self.workers:
            self.workers[worker] = self.bars.add_task("", total=None, status="")
        fields: dict[str, Any] = {"description": f"  {worker}: {escape(text)}"}
        if total is not None:
            fields |= {"total": total, "completed": completed or 0}
        self.bars.update(self.workers[worker], **fields)

    def unit_started(self, worker: str, unit: WorkUnit) -> None:
        self.counts["running"] += 1
        self._worker_line(worker, unit.label, 0, None)
        self._refresh()

    def event(self, worker: str, unit: WorkUnit, kind: str, payload: dict) -> None:
        if kind == "preparing":
            self._worker_line(worker, f"{payload['label']} preparing data")
        elif kind == "training":
            self.max_epochs[worker] = payload["max_epochs"]
            self._worker_line(worker, f"{payload['label']} training", 0, payload["max_epochs"])
        elif kind == "epoch":
            self._worker_line(worker, f"{unit.label} epoch {payload['epoch']}, train acc {payload['train_acc']:.3f}",
                              payload["epoch"], self.max_epochs.get(worker))
        elif kind == "measuring":
            self._worker_line(worker, f"{unit.label} {payload['measure']}", payload["index"], payload["total"])
        elif kind == "value" and payload.get("error") and not payload.get("not_applicable"):
            self.console.print(f"[red]error[/red] {escape(payload['measure'])} on {escape(unit.label)}: "
                               f"{escape(str(payload['error']))}", highlight=False)

    def unit_finished(self, worker: str, result: UnitResult) -> None:
        self.counts["running"] = max(0, self.counts["running"] - 1)
        if result.status == "failed":
            self.counts["failed"] += 1
            self.failures.append(result)
            self.console.print(f"[red]failed[/red] {escape(result.label)}: {escape(result.message)}", highlight=False)
        else:
            self.counts["done"] += 1
            what = ", ".join(p for p in ("trained" if result.trained else "",
                                         f"{result.computed} {'value' if result.computed == 1 else 'values'} computed"
                                         if result.computed else "") if p) or "nothing to do"
            self.console.print(f"{escape(result.label)}: {what} ({result.seconds:.1f} s, {escape(worker)})", highlight=False)
        if self.live and worker in self.workers:
            self.bars.update(self.workers[worker], description=f"  {worker}: idle", total=None, completed=0)
        if self.live and self.total is not None:
            self.bars.advance(self.total)
        self._refresh()

    def _refresh(self) -> None:
        if self.live and self.total is not None:
            self.bars.update(self.total, status=self._status())
