"""What the command line prints says what happens: plural forms, spelled-out column headers,
tables that fold instead of cutting words on narrow terminals, `runs --json` as described."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from gentest.cli import build_parser, main, measures_table, plural, runs_table

from conftest import write_suite

ROW = {"dataset": "mnist1d", "model": "mlp", "randomization": "random-pixels", "p": 1.0, "seed": 2,
       "train_acc": 1.0, "test_acc": 0.2867, "steps_to_fit": 1024, "epochs": 32, "wall_s": 5.99}


def rendered(table, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue()


def test_plural():
    assert [plural(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]


def test_one_run_is_one_run_and_runs_json_is_one_array(tmp_path, capsys):
    suite = write_suite(tmp_path, randomizations=("none",), seeds=(0,))
    store = str(tmp_path / "store")
    assert main(["train", str(suite), "--store", store, "--device", "cpu"]) == 0
    out, _ = capsys.readouterr()
    assert re.search(r"tiny: 1 run\b(?!s)", out) and "1 runs" not in out
    assert main(["runs", "--store", store]) == 0
    out, _ = capsys.readouterr()
    assert re.search(rf"\b1 run in {re.escape(store)}", out) and "train s" in out
    assert main(["runs", "--store", store, "--json"]) == 0
    rows = json.loads(capsys.readouterr()[0])
    assert isinstance(rows, list) and len(rows) == 1 and rows[0]["seed"] == 0
    # what tells runs apart travels with each row: environment, options, training settings
    assert rows[0]["environment"].startswith(rows[0]["dataset"] + "/" + rows[0]["model"])
    assert isinstance(rows[0]["model_args"], dict) and "train.lr" in rows[0]
    runs_help = next(a for a in build_parser()._subparsers._group_actions[0].choices["runs"]._actions
                     if a.dest == "json").help
    assert runs_help == "print one JSON array of run rows"


def test_runs_table_headers_are_spelled_out_and_narrow_tables_fold():
    wide = rendered(runs_table([ROW], "1 run"), 200)
    for header in ("train acc %", "test acc %", "steps to fit", "train s"):
        assert header in wide
    narrow = rendered(runs_table([ROW, {**ROW, "randomization": "labels", "steps_to_fit": None}], "2 runs"), 80)
    assert "…" not in narrow
    for number in ("100.00", "28.67", "1024", "6.0"):  # whole, on one line
        assert number in narrow
    assert "not fit" in narrow and "(32 ep)" in narrow
    assert all(line.count("│") == 9 for line in narrow.splitlines() if "│" in line)  # every column shown


def test_runs_are_told_apart_by_their_environment():
    """Two MLPs of different depth and weight decay must not both read 'mlp' (issue 9.4)."""
    rows = [{**ROW, "environment": "mnist1d/mlp hidden=[512] weight_decay=0.0"},
            {**ROW, "environment": "mnist1d/mlp hidden=[512,512,512] weight_decay=0.0005"}]
    wide = rendered(runs_table(rows, "2 runs"), 200)
    assert "environment" in wide
    assert "hidden=[512] weight_decay=0.0 " in wide and "hidden=[512,512,512] weight_decay=0.0005" in wide


def test_measures_table_folds_names_instead_of_cutting_them():
    infos = [{"name": "margin.log_prod_spectral_over_margin", "family": "margin", "orientation": "higher-worse",
              "requires": ["init", "data"], "source": "entry point measures.margins (gentest-harness)"}]
    narrow = rendered(measures_table(infos), 50)
    assert "…" not in narrow
    assert re.search(r"\b1 registered measure\b(?!s)", narrow)
