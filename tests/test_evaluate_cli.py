"""gentest evaluate / measures / report end to end, through the command line."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from gentest.cli import main
from gentest.leaderboard import MEASURE_KEYS, RUN_KEYS

from conftest import write_suite

BROKEN_PLUGIN = """
import torch
from gentest import measure

@measure("plugin.raises", family="test", orientation="higher-worse")
def raises(ctx):
    raise RuntimeError("this measure is broken")

@measure("plugin.nan", family="test", orientation="higher-worse")
def nan(ctx):
    return float("nan")

@measure("plugin.mutates", family="test", orientation="higher-worse")
def mutates(ctx):
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.zero_()
    return 0.0
"""


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One evaluation of the tiny suite with the built-ins and a broken plug-in."""
    folder = tmp_path_factory.mktemp("evaluate")
    suite = write_suite(folder, seeds=(0, 1, 2))
    plugin = folder / "broken.py"
    plugin.write_text(BROKEN_PLUGIN)
    out = folder / "report"
    code = main(["evaluate", str(suite), "--store", str(folder / "store"), "--out", str(out),
                 "--plugin", str(plugin), "--device", "cpu"])
    return code, folder, suite, plugin, out


def test_evaluate_writes_a_leaderboard_with_stable_keys_and_sound_controls(evaluated):
    code, folder, suite, plugin, out = evaluated
    assert code == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert {"suite", "gentest_version", "runs", "measures", "controls_ok"} <= set(board)
    assert len(board["runs"]) == 6 and all(set(RUN_KEYS) <= set(r) for r in board["runs"])
    assert all(set(MEASURE_KEYS) <= set(m) for m in board["measures"])
    by_name = {m["name"]: m for m in board["measures"]}
    # Three pairs are too few for a verdict (a 95 % interval under 0.1 takes about 36).
    assert by_name["control.gap"]["sign_error"] == 0 and by_name["control.gap"]["verdict"] == "inconclusive"
    assert by_name["control.param_count"]["verdict"] == "inconclusive" and by_name["control.param_count"]["sign_error"] == 0.5
    assert board["schema_version"] == 2 and len(board["pairs"]) == 3
    assert board["controls_ok"] is True
    assert {"norm.param_l2", "margin.output_margin"} <= set(by_name)
    for f in ("leaderboard.md", "leaderboard.html", "runs.csv", "measures.csv"):
        assert (out / f).is_file()


def test_broken_plugin_measures_are_errors_and_everything_else_is_reported(evaluated):
    code, folder, suite, plugin, out = evaluated
    by_name = {m["name"]: m for m in json.loads((out / "leaderboard.json").read_text())["measures"]}
    for name in ("plugin.raises", "plugin.nan", "plugin.mutates"):
        assert by_name[name]["verdict"] == "error" and by_name[name]["errors"] == 6
    assert by_name["norm.param_l2"]["errors"] == 0 and by_name["norm.param_l2"]["verdict"] != "error"
    csv_text = (out / "measures.csv").read_text()
    assert "RuntimeError: this measure is broken" in csv_text and "modified the model's weights" in csv_text


def test_a_warm_store_computes_nothing_and_report_rerenders(evaluated, capsys):
    code, folder, suite, plugin, out = evaluated
    code, _, err = run_cli(capsys, "evaluate", str(suite), "--store", str(folder / "store"), "--out", str(out),
                           "--plugin", str(plugin), "--device", "cpu")
    assert code == 0 and "6 already stored, 0 to train" in err and ", 0 to compute" in err
    out2 = folder / "rerendered"
    code, stdout, _ = run_cli(capsys, "report", str(suite), "--store", str(folder / "store"), "--out", str(out2),
                              "--plugin", str(plugin))
    assert code == 0 and "control.gap" in stdout
    first = json.loads((out / "leaderboard.json").read_text())
    again = json.loads((out2 / "leaderboard.json").read_text())
    assert first["measures"] == again["measures"] and first["runs"] == again["runs"]


def test_rescore_rebuilds_the_same_board_from_the_reports_own_files(evaluated, capsys, tmp_path):
    code, folder, suite, plugin, out = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    code, stdout, _ = run_cli(capsys, "rescore", str(copy))
    assert code == 0 and "re-scored" in stdout
    first = json.loads((out / "leaderboard.json").read_text())
    again = json.loads((copy / "leaderboard.json").read_text())
    assert again["measures"] == first["measures"] and again["runs"] == first["runs"] and again["pairs"] == first["pairs"]
    assert again["table1"] == first["table1"] and "rescored_by" in again["provenance"]
    assert (copy / "figures" / "fig1a-train-loss.png").read_bytes() == (out / "figures" / "fig1a-train-loss.png").read_bytes()
    # A schema-1 report kept no not_applicable column: a value-less row of a measure without
    # errors was n/a. Rescoring such a file gives the same board.
    with open(copy / "measures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(copy / "measures.csv", "w", newline="") as fh:
        columns = [c for c in rows[0] if c != "not_applicable"]
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    code, _, _ = run_cli(capsys, "rescore", str(copy), "--out", str(tmp_path / "v1"))
    assert code == 0
    assert json.loads((tmp_path / "v1" / "leaderboard.json").read_text())["measures"] == first["measures"]


def test_rescore_of_something_that_is_not_a_report_is_one_sentence(tmp_path, capsys):
    code, _, err = run_cli(capsys, "rescore", str(tmp_path))
    assert code == 2 and "is not a report folder that can be re-scored: leaderboard.json is missing" in err
    assert len(err.strip().splitlines()) == 1


def test_measures_lists_builtins_with_source(capsys):
    code, out, _ = run_cli(capsys, "measures", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and {"control.gap", "control.param_count", "norm.param_l2"} <= set(rows)
    assert rows["norm.param_l2"]["source"] == "entry point measures.norms (gentest-harness)"
    assert {"name", "family", "orientation", "requires", "source"} <= set(rows["control.gap"])


def test_unknown_measure_and_broken_plugin_are_exit_2(tmp_path, capsys):
    suite = write_suite(tmp_path)
    code, _, err = run_cli(capsys, "evaluate", str(suite), "--measures", "norm.param_l3", "--store", str(tmp_path / "s"))
    assert code == 2 and "unknown measure 'norm.param_l3'; did you mean norm.param_l2" in err and err.count("\n") == 1
    broken = tmp_path / "broken.py"
    broken.write_text("def broken(:\n")
    code, _, err = run_cli(capsys, "evaluate", str(suite), "--plugin", str(broken), "--store", str(tmp_path / "s"))
    assert code == 2 and f"plugin {broken.resolve()}: SyntaxError" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()  # nothing was trained on bad input


@pytest.mark.slow
def test_evaluate_ci_suite_every_builtin_measure_gives_a_value_on_every_run_it_applies_to(tmp_path, capsys):
    """Every built-in measure on the real (trained) ci runs: no errored verdict, and on each
    run either a finite value or a reason it does not apply, the same for all four runs (they
    share one architecture). A built-in that errors on real runs fails here by name."""
    import math

    from gentest.registry import all_measures
    from gentest.store import RunStore

    # Named, not "every registered measure": other test modules register broken measures at import.
    builtins = {n: m for n, m in all_measures().items() if m.source.endswith("(gentest-harness)")}  # entry points
    assert {"control.gap", "norm.param_l2", "hessian.trace", "stability.replace_loss_change"} <= builtins.keys()
    out, store = tmp_path / "out", tmp_path / "store"
    code, _, _ = run_cli(capsys, "evaluate", "ci", "--store", str(store), "--out", str(out), "--device", "cpu",
                         "--measures", ",".join(sorted(builtins)))
    board = json.loads((out / "leaderboard.json").read_text())
    assert code == 0 and board["suite"] == "ci" and board["controls_ok"] is True
    assert len(board["runs"]) == 4
    assert {m["name"] for m in board["measures"]} == builtins.keys()  # every built-in was on the board
    errored = {m["name"]: m["reason"] for m in board["measures"] if m["verdict"] == "error"}
    assert errored == {}
    runs = RunStore(store)
    for name, measure in sorted(builtins.items()):
        values = [runs.get_value(r["key"], name, measure.version) for r in board["runs"]]
        assert all(v is not None for v in values), f"{name}: a value was not stored"
        problems = [v.error for v in values if not v.not_applicable and (v.error is not None or not math.isfinite(v.value))]
        assert problems == [], f"{name}: {problems}"
        assert len({v.not_applicable for v in values}) == 1, f"{name}: applies to some ci runs only"
