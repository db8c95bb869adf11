"""The ``gentest`` command line.

Exit codes: 0 done, 1 a check or expectation failed, 2 bad input (one sentence on stderr, no
traceback). Progress goes to stderr, results to stdout; ``--json`` output is machine-readable.
Heavy imports (torch) happen inside the commands so ``gentest --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from gentest.errors import GentestError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (exit 2); return, don't raise
        return int(e.code or 0)
    if not hasattr(args, "command"):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.command(args)
    except GentestError as e:
        print(f"gentest: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("gentest: interrupted; finished runs are kept in the store", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors also exit 2, in one line
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gentest", description="Randomization tests for generalization measures.")
    from gentest import __version__

    parser.add_argument("--version", action="version", version=f"gentest {__version__}")
    sub = parser.add_subparsers(title="commands", parser_class=_Parser)

    train = sub.add_parser("train", help="train a suite's runs that the store lacks")
    train.add_argument("suite", help="a built-in suite name (quick, ci, ...) or a path to a suite TOML file")
    _add_store(train)
    _add_data(train)
    train.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    train.set_defaults(command=cmd_train)

    evaluate = sub.add_parser("evaluate", help="train what is missing, evaluate measures, score, report")
    evaluate.add_argument("suite", nargs="?", default="quick", help="a built-in suite name or a suite file (default: quick)")
    _add_measures(evaluate)
    _add_store(evaluate)
    _add_out(evaluate)
    _add_data(evaluate)
    evaluate.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    evaluate.set_defaults(command=cmd_evaluate)

    report = sub.add_parser("report", help="re-render the leaderboard from the store (trains and computes nothing)")
    report.add_argument("suite", nargs="?", default=None, help="limit to this suite's runs (default: every run)")
    report.add_argument("--plugin", action="append", default=[], metavar="FILE", help="a measure plug-in file")
    _add_store(report)
    _add_out(report)
    report.set_defaults(command=cmd_report)

    check = sub.add_parser("check", help="check one measure's contract and verdict on a small suite (for CI)")
    check.add_argument("measure", help="a registered measure name, or path.py:function")
    check.add_argument("--expect", default="separates", choices=("separates", "fails", "inverts"),
                       help="the verdict the measure must reach (default: separates)")
    check.add_argument("--suite", default="ci", help="the suite to check on (default: ci, seconds on a CPU)")
    check.add_argument("--plugin", action="append", default=[], metavar="FILE", help="a measure plug-in file")
    _add_store(check)
    _add_data(check)
    check.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    check.set_defaults(command=cmd_check)

    measures = sub.add_parser("measures", help="list the registered measures")
    measures.add_argument("--plugin", action="append", default=[], metavar="FILE", help="a measure plug-in file")
    measures.add_argument("--json", action="store_true", help="print one JSON array")
    measures.set_defaults(command=cmd_measures)

    runs = sub.add_parser("runs", help="list the runs in the store")
    _add_store(runs)
    runs.add_argument("--json", action="store_true", help="print one JSON array of run rows")
    runs.set_defaults(command=cmd_runs)
    return parser


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=".gentest", help="the run store folder (default: .gentest)")


def _add_measures(p: argparse.ArgumentParser) -> None:
    p.add_argument("--measures", default=None, help="comma-separated measure names (default: the suite's, else all)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE", help="a measure plug-in file (repeatable)")


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="report folder (default: gentest-reports/<suite> beside the store)")


def _out_dir(args: argparse.Namespace, suite_name: str):
    from pathlib import Path

    return Path(args.out) if args.out else Path(args.store).absolute().parent / "gentest-reports" / suite_name


def check_inputs(args: argparse.Namespace, suite=None) -> None:
    """Paths checked before any work: a store to write into (or, for commands that only read
    the store, one that exists), a report folder, and a data root to download into."""
    from pathlib import Path

    from gentest.inputs import check_existing_store, check_writable_dir, needs_data_root

    if args.command in (cmd_runs, cmd_report):
        check_existing_store(args.store)
    else:
        check_writable_dir(args.store, "--store")
    if hasattr(args, "out"):
        check_writable_dir(args.out if args.out else Path(args.store).absolute().parent / "gentest-reports", "--out")
    if getattr(args, "download", False) and suite is not None and needs_data_root({s.dataset for s in suite.specs}):
        from gentest.datasets import default_data_root

        check_writable_dir(args.data_root or default_data_root(), "--data-root")


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, help="where image datasets live (default: ~/.cache/gentest/data)")
    p.add_argument("--download", action="store_true", help="let torchvision download missing image datasets")


def cmd_train(args: argparse.Namespace) -> int:
    from gentest.devices import resolve_device
    from gentest.runner import DataCache, train_missing
    from gentest.store import RunStore
    from gentest.suites import load_suite

    suite = load_suite(args.suite)
    check_inputs(args, suite)
    device = resolve_device(args.device)
    with _progress() as progress:
        runs = train_missing(
            suite.specs, RunStore(args.store), device, DataCache(args.data_root, args.download), progress
        )
    _console().print(runs_table([r.row() for r in runs], title=f"{suite.name}: {len(runs)} runs"))
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gentest.devices import resolve_device
    from gentest.inputs import parse_measure_names
    from gentest.pipeline import choose_measures, evaluate_suite
    from gentest.progress import EvaluationBars
    from gentest.reports import leaderboard_table, write_report
    from gentest.runner import DataCache
    from gentest.store import RunStore
    from gentest.suites import load_suite

    suite = load_suite(args.suite)
    check_inputs(args, suite)
    measures = choose_measures(parse_measure_names(args.measures), suite, args.plugin)
    device = resolve_device(args.device)
    console = _console(stderr=True)
    with _progress() as train_progress, EvaluationBars(console) as eval_progress:
        board = evaluate_suite(
            suite, measures, RunStore(args.store), device, DataCache(args.data_root, args.download),
            train_progress, eval_progress,
        )
    out = _out_dir(args, suite.name)
    write_report(board, out)
    _console().print(leaderboard_table(board))
    console.print(f"report written to {out}/leaderboard.{{md,html,json}}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from gentest.pipeline import stored_leaderboard
    from gentest.reports import leaderboard_table, write_report
    from gentest.store import RunStore
    from gentest.suites import load_suite

    suite = load_suite(args.suite) if args.suite else None
    check_inputs(args, suite)
    board = stored_leaderboard(RunStore(args.store), suite, args.plugin)
    if not board.runs:
        raise GentestError(f"the store {args.store} holds no runs{' of suite ' + suite.name if suite else ''}; run gentest evaluate first")
    out = _out_dir(args, board.suite)
    write_report(board, out)
    _console().print(leaderboard_table(board))
    _console(stderr=True).print(f"report written to {out}/leaderboard.{{md,html,json}}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    import time

    from rich.table import Table

    from gentest.check import check_measure, resolve_measure
    from gentest.devices import resolve_device
    from gentest.runner import DataCache, train_missing
    from gentest.store import RunStore
    from gentest.suites import load_suite

    start = time.perf_counter()
    measure = resolve_measure(args.measure, args.plugin)
    suite = load_suite(args.suite)
    check_inputs(args, suite)
    device = resolve_device(args.device)
    store, data = RunStore(args.store), DataCache(args.data_root, args.download)
    with _progress() as progress:
        runs = train_missing(suite.specs, store, device, data, progress)
    result = check_measure(measure, runs, device, data, args.expect, store)

    table = Table(title=f"gentest check {measure.name} on suite {suite.name}")
    for col in ("run", "value", "s per call", "contract"):
        table.add_column(col, justify="right" if col in ("value", "s per call") else "left")
    for c in result.runs:
        status = "n/a: " + c.not_applicable if c.not_applicable else (c.problem or "ok")
        table.add_row(c.run.spec.label(), f"{c.value:.6g}" if c.value is not None else "—", f"{c.seconds:.3f}", status)
    console = _console()
    console.print(table)
    sc = result.score
    sign = f"{sc.sign_error:.2f}" if sc.sign_error is not None else "—"
    console.print(f"sign-error {sign} over {sc.n_pairs} pairs; verdict [bold]{sc.verdict}[/bold] ({sc.reason}); "
                  f"expected {args.expect}; {time.perf_counter() - start:.1f} s in all", highlight=False)
    if result.ok:
        console.print(f"[green]PASS[/green] {measure.name}", highlight=False)
        return EXIT_OK
    from rich.markup import escape

    for failure in result.failures:
        console.print(f"[red]FAIL[/red] {escape(failure)}", highlight=False)
    return EXIT_FAILED


def cmd_measures(args: argparse.Namespace) -> int:
    from gentest.registry import all_measures

    infos = [m.info() for m in all_measures(args.plugin).values()]
    if args.json:
        print(json.dumps(infos, indent=1))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"{len(infos)} registered measures")
    for col in ("name", "family", "orientation", "requires", "source"):
        table.add_column(col, no_wrap=col in ("name", "orientation"))
    for i in infos:
        source = i["source"].removeprefix("entry point ")
        table.add_row(i["name"], i["family"], i["orientation"], ", ".join(i["requires"]), source)
    _console().print(table)
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from gentest.store import RunStore

    check_inputs(args)
    rows = [run.row() for run in RunStore(args.store).runs()]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        _console().print(runs_table(rows, title=f"{len(rows)} runs in {args.store}"))
    return EXIT_OK


def runs_table(rows: list[dict[str, Any]], title: str):
    """A table in the spirit of the paper's Table 1."""
    from rich.table import Table

    table = Table(title=title)
    for name in ("dataset", "model", "randomization", "p", "seed", "train acc", "test acc", "steps to fit", "s"):
        table.add_column(name, justify="left" if name in ("dataset", "model", "randomization") else "right")
    for r in rows:
        table.add_row(
            r["dataset"],
            r["model"],
            r["randomization"] + (f" (retrain, {r['replace_k']} replaced)" if r.get("replace_k") else ""),
            f"{r['p']:g}",
            str(r["seed"]),
            f"{100 * r['train_acc']:.2f}",
            f"{100 * r['test_acc']:.2f}",
            str(r["steps_to_fit"]) if r["steps_to_fit"] is not None else f"not fit ({r['epochs']} ep)",
            f"{r['wall_s']:.1f}",
        )
    return table


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        console = Console(stderr=stderr, width=max(console.width, 120))
    return console


def _progress():
    from gentest.progress import TrainingProgress

    return TrainingProgress(_console(stderr=True))


if __name__ == "__main__":
    sys.exit(main())
