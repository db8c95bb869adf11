"""The ``gentest`` command line.

Exit codes: 0 done, 1 a check or expectation failed, 2 bad input (one sentence on stderr, no
traceback). Progress goes to stderr, results to stdout; ``--json`` output is machine-readable.
Heavy imports (torch) happen inside the commands so ``gentest --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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
    parser = _Parser(prog="gentest", description="Randomization tests for generalization measures.",
                     epilog="Suites are TOML files: `gentest suites` shows the format and the built-in suites.")
    from gentest import __version__

    parser.add_argument("--version", action="version", version=f"gentest {__version__}")
    sub = parser.add_subparsers(title="commands", parser_class=_Parser)

    train = sub.add_parser("train", help="train a suite's runs that the store lacks")
    train.add_argument("suite", help="a built-in suite name (quick, ci, ...) or a path to a suite TOML file")
    _add_store(train)
    _add_data(train)
    train.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    _add_executor(train)
    train.set_defaults(command=cmd_train)

    evaluate = sub.add_parser("evaluate", help="train what is missing, evaluate measures, score, report")
    evaluate.add_argument("suite", nargs="?", default="quick", help="a built-in suite name or a suite file (default: quick)")
    _add_measures(evaluate)
    _add_store(evaluate)
    _add_out(evaluate)
    _add_data(evaluate)
    evaluate.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    _add_executor(evaluate)
    evaluate.set_defaults(command=cmd_evaluate)

    report = sub.add_parser("report", help="re-render the leaderboard from the store (trains and computes nothing)")
    report.add_argument("suite", nargs="?", default=None,
                        help="the suite to report: built-in, a file, or a suite the store ran (default: the store's "
                             "only suite)")
    report.add_argument("--plugin", action="append", default=[], metavar="FILE", help="a measure plug-in file")
    _add_store(report)
    _add_out(report)
    report.set_defaults(command=cmd_report)

    rescore = sub.add_parser("rescore", help="score a written report again from its own files (trains and computes nothing)")
    rescore.add_argument("report", help="a report folder (leaderboard.json and measures.csv)")
    rescore.add_argument("--out", default=None, help="where to write the re-scored report (default: over the one read)")
    rescore.set_defaults(command=cmd_rescore)

    check = sub.add_parser("check", help="check one measure's contract and verdict on a small suite (for CI)")
    check.add_argument("measure", help="a registered measure name, or path.py:function")
    check.add_argument("--expect", default="separates", choices=("separates", "inverts", "unreliable", "chance"),
                       help="the verdict the measure must reach, or on a suite too small for a verdict, agree with "
                            "(default: separates)")
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

    status = sub.add_parser("status", help="what a suite's runs are doing: done, running, failed, pending")
    status.add_argument("suite", nargs="?", default="quick", help="a built-in suite name or a suite file (default: quick)")
    _add_store(status)
    status.add_argument("--json", action="store_true", help="print one JSON array of rows")
    status.set_defaults(command=cmd_status)

    runs = sub.add_parser("runs", help="list the runs in the store")
    _add_store(runs)
    runs.add_argument("--json", action="store_true", help="print one JSON array of run rows")
    runs.add_argument("--verify", action="store_true",
                      help="also check every run's weights checksum and every value file; exit 1 on any problem")
    runs.set_defaults(command=cmd_runs)

    doctor = sub.add_parser("doctor", help="check every run and cached value in the store; exit 1 on any problem")
    _add_store(doctor)
    doctor.add_argument("--fix", action="store_true",
                        help="move damaged runs and unusable value files to the store's quarantine/ folder (the next "
                             "train or evaluate redoes them) and remove debris of dead processes; exit 1 only "
                             "if something could not be moved")
    doctor.set_defaults(command=cmd_doctor)
    suites = sub.add_parser("suites", help="the suite file format, with an example, and the built-in suites")
    suites.set_defaults(command=cmd_suites)

    compare = sub.add_parser("compare", help="two reports of one suite (e.g. from two machines), verdict by "
                                             "verdict; exit 1 if a definite verdict contradicts another")
    compare.add_argument("report_a", help="a report folder (or its leaderboard.json)")
    compare.add_argument("report_b", help="another report of the same suite")
    compare.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    compare.set_defaults(command=cmd_compare)
    return parser


def _add_store(p: argparse.ArgumentParser) -> None:
    import os

    p.add_argument("--store", default=os.environ.get("GENTEST_STORE") or ".gentest",
                   help="the run store folder (default: $GENTEST_STORE, else .gentest)")


def _add_measures(p: argparse.ArgumentParser) -> None:
    p.add_argument("--measures", default=None, help="comma-separated measure names (default: the suite's, else all)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE", help="a measure plug-in file (repeatable)")


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="report folder (default: gentest-reports/<suite> beside the store)")


def _out_dir(args: argparse.Namespace, suite_name: str):
    from pathlib import Path

    return Path(args.out) if args.out else Path(args.store).absolute().parent / "gentest-reports" / suite_name


def _add_executor(p: argparse.ArgumentParser) -> None:
    from gentest.executors import EXECUTORS

    g = p.add_argument_group("where the runs go (one unit of work = one run: train it, then measure it)")
    g.add_argument("--executor", default="pool", choices=EXECUTORS,
                   help="pool: local worker processes (default); slurm: a Slurm job array through submitit; "
                        "submitit-local: the same submitit path on local subprocesses")
    g.add_argument("--jobs", default="auto", metavar="N|auto",
                   help="pool workers (default auto: one per core on the CPU, one per visible GPU on CUDA)")
    g.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per worker (default 1, so numbers do not depend on --jobs or the core count)")
    s = p.add_argument_group("Slurm (with --executor slurm or submitit-local)")
    s.add_argument("--runs-per-job", type=int, default=None, metavar="K", help="runs chunked into one array task (default 1)")
    s.add_argument("--no-wait", action="store_true", help="submit, print the job ids and return; see gentest status")
    s.add_argument("--slurm-partition", default=None)
    s.add_argument("--slurm-time", type=int, default=None, metavar="MIN", help="time limit per array task (default 240)")
    s.add_argument("--slurm-gpus-per-job", type=int, default=None, metavar="G")
    s.add_argument("--slurm-cpus-per-job", type=int, default=None, metavar="C")
    s.add_argument("--slurm-array-parallelism", type=int, default=None, metavar="P", help="tasks running at once (default 64)")
    s.add_argument("--slurm-account", default=None)
    s.add_argument("--slurm-qos", default=None)
    s.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE", help="any other sbatch option (repeatable)")


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
    from gentest.pipeline import remember_suite, run_grid
    from gentest.store import RunStore
    from gentest.suites import load_suite

    suite = load_suite(args.suite)
    check_inputs(args, suite)
    plan = _grid_plan(args)
    store = RunStore(args.store)
    remember_suite(store, suite)  # so that `gentest report` knows the suite of these runs
    outcome = run_grid(suite.specs, [], store, plan, _grid_progress("trained"))
    if not outcome.waited:
        return _submitted(outcome)
    from gentest.pipeline import described_rows

    runs = [store.load(s.key) for s in suite.specs if s.key in store]
    _console().print(runs_table(described_rows(runs), title=f"{suite.name}: {plural(len(runs), 'run')}"))
    return _failures(outcome)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gentest.inputs import parse_measure_names
    from gentest.pipeline import build_leaderboard, choose_measures, remember_suite, run_grid
    from gentest.reports import controls_exit_code, leaderboard_table, write_report
    from gentest.store import RunStore
    from gentest.suites import load_suite

    suite = load_suite(args.suite)
    check_inputs(args, suite)
    measures = choose_measures(parse_measure_names(args.measures), suite, args.plugin)
    plan = _grid_plan(args, measures)
    store = RunStore(args.store)
    remember_suite(store, suite)  # so that `gentest report` knows the suite of these runs
    outcome = run_grid(suite.specs, measures, store, plan, _grid_progress("evaluated"))
    if not outcome.waited:
        return _submitted(outcome)
    runs = [store.load(s.key) for s in suite.specs if s.key in store]
    values = [store.get_value(r.key, m.name, m.version) for r in runs for m in measures]
    board = build_leaderboard(suite.name, runs, measures, values)
    out = _out_dir(args, suite.name)
    write_report(board, out)
    _console().print(leaderboard_table(board))
    _console(stderr=True).print(f"report written to {out}/leaderboard.{{md,html,json}}")
    return _failures(outcome) or controls_exit_code(board)


def _grid_plan(args: argparse.Namespace, measures=()):
    """The executor settings from the command line, checked before any work starts."""
    from gentest.pipeline import GridPlan

    return GridPlan.from_options(
        executor=args.executor, jobs=args.jobs, threads=args.threads, device=args.device,
        store=args.store, data_root=args.data_root, download=args.download,
        plugins=getattr(args, "plugin", []), measures=list(measures),
        slurm={k.removeprefix("slurm_"): v for k, v in vars(args).items() if k.startswith("slurm_")},
        runs_per_job=args.runs_per_job, wait=not args.no_wait,
    )


def _grid_progress(verb: str):
    from gentest.progress import GridProgress

    return GridProgress(_console(stderr=True), verb)


def _submitted(outcome) -> int:
    print(" ".join(outcome.job_ids))
    _console(stderr=True).print("submitted; follow it with gentest status (same suite and --store)")
    return EXIT_OK


def _failures(outcome) -> int:
    if not outcome.failures:
        return EXIT_OK
    from rich.markup import escape

    console = _console(stderr=True)
    console.print(f"[red]{plural(len(outcome.failures), 'run')} failed[/red] (run the same command again to retry "
                  "only what is missing):", highlight=False)
    for f in outcome.failures:
        console.print(f"  {escape(f.label)}: {escape(f.message)}", highlight=False)
    return EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    from gentest.executors.status import grid_status
    from gentest.store import RunStore
    from gentest.suites import load_suite

    suite = load_suite(args.suite)
    rows = grid_status(RunStore(args.store), suite.specs)
    if args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    from collections import Counter

    from rich.table import Table

    counts = Counter(r["state"] for r in rows)
    table = Table(title=f"{suite.name} in {args.store}: " + ", ".join(f"{counts[s]} {s}" for s in
                  ("done", "running", "failed", "pending")))
    for col in ("run", "state", "message"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["label"], r["state"], r["message"])
    _console().print(table)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from gentest.pipeline import stored_leaderboard
    from gentest.reports import controls_exit_code, leaderboard_table, write_report
    from gentest.store import RunStore

    check_inputs(args)
    store = RunStore(args.store)
    suite = report_suite(args.suite, store)
    board = stored_leaderboard(store, suite, args.plugin)
    if not board.runs:
        raise GentestError(f"the store {args.store} holds no runs of suite {suite.name}; run gentest evaluate first")
    out = _out_dir(args, board.suite)
    write_report(board, out)
    _console().print(leaderboard_table(board))
    _console(stderr=True).print(f"report written to {out}/leaderboard.{{md,html,json}}")
    return controls_exit_code(board)


def report_suite(name: str | None, store):
    """The one suite `gentest report` reports: the one named (built-in, file, or a suite whose copy
    the store keeps), else the store's only suite. Runs of different suites are never scored
    together: with several suites in the store, the user picks one."""
    from pathlib import Path

    from gentest.pipeline import stored_suites
    from gentest.suites import builtin_suites, load_suite

    if name is not None and (name in builtin_suites() or Path(name).is_file()):
        return load_suite(name)
    found = stored_suites(store)
    if name is not None:
        if name in found:
            return found[name]
        load_suite(name)  # raises: no such built-in or file
    if len(found) == 1:
        return next(iter(found.values()))
    if not store.keys():
        raise GentestError(f"the store {store.root} holds no runs; run gentest evaluate first")
    if not found:
        raise GentestError(f"the store {store.root} holds {plural(len(store.keys()), 'run')} of no suite it knows; "
                           "name the suite file: gentest report SUITE")
    listed = ", ".join(f"{n} ({plural(sum(s.key in store for s in suite.specs), 'run')})" for n, suite in found.items())
    raise GentestError(f"the store {store.root} holds runs of {len(found)} suites: {listed}; "
                       "report one at a time: gentest report SUITE")


def cmd_rescore(args: argparse.Namespace) -> int:
    from gentest.reports import controls_exit_code, write_report
    from gentest.rescore import load_report

    board = load_report(args.report)
    out = Path(args.out) if args.out else Path(args.report)
    write_report(board, out, command=None)
    console = _console()
    console.print(f"re-scored {len(board.measures)} measures over {len(board.runs)} runs: {out}", highlight=False)
    return controls_exit_code(board)


def cmd_check(args: argparse.Namespace) -> int:
    import time

    from rich.table import Table

    from gentest.check import check_measure, resolve_measure
    from gentest.devices import resolve_device
    from gentest.pipeline import remember_suite
    from gentest.runner import DataCache, train_missing
    from gentest.store import RunStore
    from gentest.suites import load_suite

    start = time.perf_counter()
    measure = resolve_measure(args.measure, args.plugin)
    suite = load_suite(args.suite)
    check_inputs(args, suite)
    device = resolve_device(args.device)
    store, data = RunStore(args.store), DataCache(args.data_root, args.download)
    remember_suite(store, suite)  # so that `gentest report` knows the suite of these runs
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
    expected = f"expected {args.expect}"
    if result.ok and sc.verdict != args.expect:
        expected += " (agreed with: too few pairs here for a verdict; a board gives one)"
    console.print(f"sign-error {sign} over {sc.n_pairs} pairs; verdict [bold]{sc.verdict}[/bold] ({sc.reason}); "
                  f"{expected}; {time.perf_counter() - start:.1f} s in all", highlight=False)
    if result.ok:
        console.print(f"[green]PASS[/green] {measure.name}", highlight=False)
        return EXIT_OK
    from rich.markup import escape

    for failure in result.failures:
        console.print(f"[red]FAIL[/red] {escape(failure)}", highlight=False, soft_wrap=True)  # one line per failure, for grep and CI logs
    return EXIT_FAILED


def cmd_measures(args: argparse.Namespace) -> int:
    from gentest.registry import all_measures

    infos = [m.info() for m in all_measures(args.plugin).values()]
    if args.json:
        print(json.dumps(infos, indent=1))
        return EXIT_OK
    _console().print(measures_table(infos))
    return EXIT_OK


def measures_table(infos: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title=plural(len(infos), "registered measure"))
    for col in ("name", "family", "orientation", "requires", "source"):  # narrow terminals: fold, never cut
        table.add_column(col, overflow="fold")
    for i in infos:
        source = i["source"].removeprefix("entry point ")
        table.add_row(i["name"], i["family"], i["orientation"], ", ".join(i["requires"]), source)
    return table


def cmd_runs(args: argparse.Namespace) -> int:
    from gentest.store import RunStore, ignore_damage

    check_inputs(args)
    # A listing reports damage (below, once) and moves nothing.
    store = RunStore.existing(args.store, heal=False, on_damage=ignore_damage)
    runs = list(store.runs())
    problems = store.verify() if args.verify else store.damaged()
    damaged = {p.key for p in store.damaged()}
    from gentest.pipeline import described_rows

    rows = described_rows([run for run in runs if run.key not in damaged])
    if args.json:
        print(json.dumps(rows, indent=1))
        for problem in problems:
            print(f"gentest: {problem}", file=sys.stderr)
    else:
        console = _console()
        summary = f"{plural(len(rows), 'run')} in {args.store}"
        if rows:
            console.print(runs_table(rows, title=summary))
        _print_problems(console, problems)
        console.print(summary + (f"; {plural(len(problems), 'problem')}" if problems else ""), highlight=False)
    return EXIT_FAILED if args.verify and problems else EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from gentest.store import BadValue, RunStore, ignore_damage

    store = RunStore.existing(args.store, heal=args.fix, on_damage=ignore_damage)
    problems = store.verify()
    if args.fix:  # damaged runs were quarantined as they were found; now the unusable value files
        fixed = [store.quarantine_value(p) if isinstance(p, BadValue) else p for p in problems]
        problems = [p for p in fixed if p is not None]  # None: sound again (rewritten meanwhile)
    console = _console()
    _print_problems(console, problems)
    checked = plural(len(set(store.keys()) | {d.key for d in store.damaged()}), "run")
    debris = store.clean_debris() if args.fix else 0
    left = [p for p in problems if p.moved_to is None]  # what a following `gentest doctor` still finds
    verdict = f"{plural(len(problems), 'problem')}" if problems else "no problems"
    if args.fix and problems:
        verdict += f", {len(problems) - len(left)} moved to quarantine/"
    console.print(f"{checked} checked in {args.store}: {verdict}"
                  + (f"; removed {plural(debris, 'piece')} of debris" if debris else ""), highlight=False)
    return EXIT_FAILED if left else EXIT_OK


def _print_problems(console, problems: list) -> None:
    from rich.markup import escape

    for problem in problems:
        console.print(f"[red]{escape(str(problem))}[/red]", highlight=False)


def cmd_compare(args: argparse.Namespace) -> int:
    from gentest.compare import compare, load_leaderboard, render

    result = compare(load_leaderboard(args.report_a), load_leaderboard(args.report_b))
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        print("\n".join(render(result, args.report_a, args.report_b)))
    return EXIT_FAILED if result.contradictions else EXIT_OK


def cmd_suites(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from gentest.suite_help import EXAMPLE, INTRO, SUITE_TABLE, builtin_rows, settings_rows

    console = _console()
    console.print(INTRO, highlight=False, markup=False)
    console.print("\nAn example (label-sweep.toml):\n", highlight=False)
    console.print(EXAMPLE, highlight=False, markup=False)
    for title, rows, columns in (
        ("[suite]", SUITE_TABLE, ("key", "what", "default")),
        ("[base] and [axes] settings", settings_rows(), ("setting", "allowed", "default")),
        ("built-in suites (by name)", [(n, str(k), d, c) for n, k, d, c in builtin_rows()],
         ("suite", "runs", "description", "cost")),
    ):
        table = Table(title=Text(title), title_justify="left")  # Text: "[suite]" is not markup
        for col in columns:
            table.add_column(col, overflow="fold", justify="right" if col == "runs" else "left")
        for row in rows:
            table.add_row(*map(Text, row))
        console.print(table)
    return EXIT_OK


def runs_table(rows: list[dict[str, Any]], title: str):
    """A table in the spirit of the paper's Table 1, one row per run; ``environment`` (dataset,
    model and the settings that vary: see ``gentest.pipeline.described_rows``) tells runs apart.
    On a narrow terminal (down to 80 columns) the
    headers and text cells fold over lines; a number is never cut or split."""
    from rich.table import Table

    headers = ("environment", "randomization", "p", "seed", "train acc %", "test acc %", "steps to fit", "train s")
    cells = [
        (
            str(r.get("environment") or f"{r['dataset']}/{r['model']}"),
            r["randomization"] + (f" (retrain, {r['replace_k']} replaced)" if r.get("replace_k") else ""),
            f"{r['p']:g}",
            str(r["seed"]),
            f"{100 * r['train_acc']:.2f}",
            f"{100 * r['test_acc']:.2f}",
            str(r["steps_to_fit"]) if r["steps_to_fit"] is not None else f"not fit ({r['epochs']} ep)",
            f"{r['wall_s']:.1f}",
        )
        for r in rows
    ]
    table = Table(title=title)
    for i, name in enumerate(headers):
        text = name in ("environment", "randomization")
        widest_number = max((len(c[i]) for c in cells if not text and " " not in c[i]), default=None)
        table.add_column(name, justify="left" if text else "right", overflow="fold", min_width=widest_number)
    for row in cells:
        table.add_row(*row)
    return table


def plural(n: int, noun: str) -> str:
    """``plural(1, "run") == "1 run"``, ``plural(2, "run") == "2 runs"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
