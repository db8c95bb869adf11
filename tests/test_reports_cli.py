"""`gentest report` on a real (tiny) store: nothing evaluated yet is not "broken", and failed
controls exit 1 with one sentence."""

from __future__ import annotations

import json
import shutil

from gentest.cli import main
from gentest.leaderboard import MeasureValue
from gentest.store import RunStore


def _copy_without_values(tiny_store, tmp_path):
    suite, store, runs = tiny_store
    root = tmp_path / "store"
    shutil.copytree(store.root, root)
    for folder in root.glob("runs/*/measures"):
        shutil.rmtree(folder)
    from gentest.pipeline import remember_suite

    remember_suite(RunStore(root), suite)  # as gentest train/evaluate do, so report finds the suite
    return suite, RunStore(root), runs


def test_report_on_runs_without_values_says_nothing_was_evaluated(tiny_store, tmp_path, capsys):
    suite, store, runs = _copy_without_values(tiny_store, tmp_path)
    code = main(["report", "--store", str(store.root), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "Nothing has been evaluated yet" in out and "broken" not in out + err
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Nothing has been evaluated yet" in md and all(r.key in md for r in runs)
    assert json.loads((tmp_path / "out" / "leaderboard.json").read_text())["evaluated"] is False


def test_report_with_failed_controls_exits_1_with_one_sentence(tiny_store, tmp_path, capsys):
    suite, store, runs = _copy_without_values(tiny_store, tmp_path)
    # A gap "control" that inverts every pair: the suite, not the measures, is broken.
    from gentest.registry import all_measures

    measures = all_measures()
    for run in runs:
        for name, value in (("control.gap", -run.metrics["gap"]), ("control.param_count", 10.0)):
            store.put_value(MeasureValue(run.key, name, measures[name].version, value, None, 0.0))
    code = main(["report", "--store", str(store.root), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("gentest: controls failed")]
    assert len(lines) == 1 and lines[0].count("broken") == 1 and lines[0].endswith("is broken.")
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert md.count("is broken") == 1
