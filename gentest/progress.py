"""Progress on stderr: rich progress bars on a terminal, one plain line per run otherwise."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gentest.evaluation import EvaluationProgress
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
            label = f"{self.run_label} [train acc {row['train_acc']:.3f}]"
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
