"""The report layer: the five report files, the plots and the terminal table, on a hand-built leaderboard."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from gentest import plots
from gentest.leaderboard import MEASURE_KEYS, RUN_KEYS, Leaderboard, MeasureScore, MeasureValue
from gentest.reports import (
    FIGURES_DIR, LEADERBOARD_HEADER, REPORT_FILES, fmt, fmt_ci, fmt_pct, json_safe, leaderboard_table, run_columns,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "boom <script>alert(1)</script> & more"
MEASURES = ("sharpness", "path_norm", "broken_measure")


def _run(key, randomization, p, seed, train_acc, test_acc, steps_to_fit):
    return {
        "key": key, "dataset": "synthetic", "model": "mlp", "randomization": randomization, "p": p,
        "effective_corruption": p * 2 / 3, "seed": seed, "train_acc": train_acc, "test_acc": test_acc,
        "gap": train_acc - test_acc, "fitted": steps_to_fit is not None, "epochs": 5,
        "steps_to_fit": steps_to_fit, "wall_s": 0.5 + seed, "device": "cpu",
    }


def _curve(final_acc, steps_per_epoch=10, epochs=4):
    return [
        {"epoch": e, "steps": e * steps_per_epoch, "lr": 0.1, "train_acc": final_acc * e / epochs,
         "train_loss": 2.0 * (1 - e / (epochs + 1)), "test_acc": 0.3 + 0.1 * e / epochs, "test_loss": 1.5}
        for e in range(epochs + 1)
    ]


def make_board(sweep: bool = True, controls_ok: bool = True) -> Leaderboard:
    runs = []
    for seed in (0, 1):
        runs.append(_run(f"nat{seed:013d}", "none", 0.0, seed, 1.0, 0.8 - 0.01 * seed, 40 + seed))
        runs.append(_run(f"rnd{seed:013d}", "labels", 1.0, seed, 1.0, 0.33, 120 + 10 * seed))
    if sweep:
        runs.append(_run("half000000000000", "labels", 0.5, 0, 0.97, 0.55, None))  # never fitted
    curves = {r["key"]: _curve(r["train_acc"]) for r in runs}
    measures = [
        MeasureScore(
            name="sharpness", family="flatness", orientation="higher-worse", n_pairs=2, sign_error=0.125,
            sign_error_ci=(0.05, 0.2), worst_env_sign_error=0.25, worst_env="mlp × labels", env_sign_errors={"mlp × labels": 0.25},
            auroc=0.9, auroc_ci=(0.8, 1.0), kendall_tau=0.6, verdict="separates", errors=0, reason="orders the pairs like the gap",
        ),
        MeasureScore(
            name="path_norm", family="norms", orientation="higher-worse", n_pairs=2, sign_error=float("nan"),
            sign_error_ci=None, worst_env_sign_error=None, worst_env=None, env_sign_errors={},
            auroc=float("inf"), auroc_ci=None, kendall_tau=None, verdict="fails", errors=0, n_ties=2, reason="ties | chance",
        ),
        MeasureScore(
            name="broken_measure", family="misc", orientation="higher-better", n_pairs=0, sign_error=None,
            sign_error_ci=None, worst_env_sign_error=None, worst_env=None, env_sign_errors={},
            auroc=None, auroc_ci=None, kendall_tau=None, verdict="error", errors=len(runs), reason="errored on every run",
        ),
    ]
    values = []
    for i, r in enumerate(runs):
        rnd = r["randomization"] != "none"
        values.append(MeasureValue(r["key"], "sharpness", "1", 1.0 + 2.0 * rnd + 0.1 * i + 1 / 3, None, 0.01))
        values.append(MeasureValue(r["key"], "path_norm", "1", 5.0, None, 0.02))
        values.append(MeasureValue(r["key"], "broken_measure", "2", None, EVIL if i == 0 else "ValueError: no", 0.0))
    return Leaderboard(
        suite="tiny-suite", gentest_version="0.1.0", runs=runs, curves=curves, measures=measures, values=values,
        controls_ok=controls_ok, controls_message="" if controls_ok else "natural runs did not beat their random-label twins",
        thresholds={"separates_below": 0.25, "inverts_above": 0.75}, measure_info={},
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Leaderboard, Path, list[Path]]:
    board = make_board()
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    return board, out, write_report(board, out, command=["gentest", "report", "--out", "x"])


# -- files -----------------------------------------------------------------------------------------

def test_writes_all_five_files_and_no_temporaries(report):
    _, out, paths = report
    assert [p.name for p in paths[: len(REPORT_FILES)]] == list(REPORT_FILES)
    assert all(p.is_file() and p.stat().st_size > 0 and p.parent == out for p in paths[: len(REPORT_FILES)])
    figures = paths[len(REPORT_FILES):]
    # heatmap, per-environment distribution, Fig. 1a, 1b, 1c, and one small multiple per measure with values
    assert [p.name for p in figures] == ["heatmap-sign-error.png", "env-sign-errors.png", "fig1a-train-loss.png",
                                         "fig1b-time-to-fit.png", "fig1c-test-error.png", "measure-sharpness.png",
                                         "measure-path_norm.png"]
    assert all(p.parent == out / FIGURES_DIR and p.read_bytes().startswith(PNG_MAGIC) for p in figures)
    assert sorted(p.name for p in out.iterdir()) == sorted([*REPORT_FILES, FIGURES_DIR])
    assert sorted(p.name for p in (out / FIGURES_DIR).iterdir()) == sorted(p.name for p in figures)


def test_json_has_stable_keys_round_trips_and_is_nan_free(report):
    board, out, _ = report
    text = (out / "leaderboard.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert {"suite", "gentest_version", "runs", "measures", "controls_ok"} <= data.keys()
    assert data["suite"] == "tiny-suite" and data["gentest_version"] == "0.1.0" and data["controls_ok"] is True
    assert len(data["runs"]) == len(board.runs) and len(data["measures"]) == len(board.measures)
    for run in data["runs"]:
        assert set(RUN_KEYS) <= run.keys()
    for m in data["measures"]:
        assert set(MEASURE_KEYS) <= m.keys()
    by_name = {m["name"]: m for m in data["measures"]}
    assert by_name["sharpness"]["sign_error"] == 0.125
    assert by_name["sharpness"]["sign_error_ci"] == [0.05, 0.2]
    assert by_name["sharpness"]["verdict"] == "separates"
    assert by_name["path_norm"]["sign_error"] is None  # NaN -> null
    assert by_name["path_norm"]["auroc"] is None  # inf -> null
    assert data["runs"][0]["key"] == board.runs[0]["key"]
    assert data["runs"][0]["test_acc"] == board.runs[0]["test_acc"]
    assert data["runs"][-1]["steps_to_fit"] is None


def test_json_safe():
    assert json_safe({"a": (1.0, float("nan")), 2: [float("-inf"), True, None, "x"]}) == {"a": [1.0, None], "2": [None, True, None, "x"]}


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_html_is_self_contained_and_escaped(report):
    board, out, _ = report
    page = (out / "leaderboard.html").read_text()
    assert "data:image/png;base64," in page
    images = _images(page)
    # heatmap, per-environment distribution, Fig. 1a/1b/1c, one per measure with values
    # (broken_measure has none); the same bytes as the PNG files
    assert len(images) == 7
    assert sorted(images) == sorted(p.read_bytes() for p in (out / FIGURES_DIR).iterdir())
    assert all(img.startswith(PNG_MAGIC) for img in images)
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    for name in MEASURES:
        assert name in page
    for verdict in ("separates", "fails", "error"):
        assert f"v-{verdict}" in page
    assert "Controls: OK" in page
    assert "gentest report --out x" in page  # how it was made
    for run in board.runs:
        assert run["key"] in page


def test_markdown_has_controls_measures_verdicts_and_sections(report):
    board, out, _ = report
    md = (out / "leaderboard.md").read_text()
    assert "tiny-suite" in md and "0.1.0" in md
    assert "Controls: OK" in md and "Controls failed" not in md
    for m in board.measures:
        assert m.name in md and m.verdict in md
    assert "0.12 [0.05, 0.20]" in md  # sign-error with its CI
    assert "0.25 (mlp × labels)" in md  # worst environment
    assert "## Verdict thresholds" in md and "separates_below" in md and "0.25" in md
    assert "## How to read this" in md and "memorized noise" in md
    assert "## Runs" in md and "## Errors" in md
    assert "ties \\| chance" in md  # a pipe in a cell does not break the table
    assert "<script>" not in md
    # leaderboard rows are well formed: every row of the table has the header's cell count
    table = [line for line in md.splitlines() if line.startswith("| ") and "sharpness" in line]
    assert table and table[0].count(" | ") == len(LEADERBOARD_HEADER) - 1


def test_markdown_and_html_say_when_controls_failed(tmp_path):
    board = make_board(controls_ok=False)
    write_report(board, tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "**Controls failed: natural runs did not beat their random-label twins**" in md
    assert "the suite is broken, not the measures" not in md  # the message says it once, the report adds nothing
    assert "Controls: OK" not in md
    page = (tmp_path / "leaderboard.html").read_text()
    assert "Controls failed: natural runs did not beat their random-label twins" in page
    assert json.loads((tmp_path / "leaderboard.json").read_text())["controls_ok"] is False


def test_runs_csv(report):
    board, out, _ = report
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(board.runs)
    header = list(rows[0].keys())
    assert header[: len(RUN_KEYS)] == list(RUN_KEYS)
    assert header[len(RUN_KEYS):] == sorted(header[len(RUN_KEYS):]) and "effective_corruption" in header
    assert rows[0]["key"] == board.runs[0]["key"]
    assert float(rows[1]["gap"]) == board.runs[1]["gap"]  # full precision
    assert rows[-1]["steps_to_fit"] == ""  # None -> empty cell


def test_measures_csv(report):
    board, out, _ = report
    with open(out / "measures.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(board.values)
    assert list(rows[0].keys()) == ["run_key", "measure", "version", "value", "error", "seconds", "not_applicable", "uncertainty",
                                    "dataset", "model", "randomization", "p", "seed", "environment", "dataset_args",
                                    "model_args"]
    runs = {r["key"]: r for r in board.runs}
    for row, v in zip(rows, board.values):
        assert row["run_key"] == v.run_key and row["measure"] == v.measure
        run = runs[v.run_key]
        assert row["randomization"] == run["randomization"] and float(row["p"]) == run["p"] and int(row["seed"]) == run["seed"]
        if v.value is not None:
            assert float(row["value"]) == v.value  # full precision (values include 1/3)
        else:
            assert row["value"] == "" and row["error"] == v.error
    assert EVIL in {r["error"] for r in rows}


def test_rewriting_a_report_replaces_it(tmp_path):
    write_report(make_board(), tmp_path)
    write_report(make_board(sweep=False), tmp_path)
    with open(tmp_path / "runs.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*REPORT_FILES, FIGURES_DIR])
    assert not (tmp_path / FIGURES_DIR / "fig1b-time-to-fit.png").exists()  # no sweep any more: no stale figure


# -- plots -----------------------------------------------------------------------------------------

def test_plots_return_png():
    board = make_board()
    assert plots.learning_curves(board.runs, board.curves).startswith(PNG_MAGIC)
    assert plots.learning_curves(board.runs, {}).startswith(PNG_MAGIC)  # no curves: still a plot
    sweep = plots.corruption_sweep(board.runs)
    assert sweep is not None and sweep.startswith(PNG_MAGIC)
    png = plots.measure_values("sharpness", board.runs, board.values, "higher-worse")
    assert png.startswith(PNG_MAGIC)
    assert plots.measure_values("broken_measure", board.runs, board.values).startswith(PNG_MAGIC)  # all errors
    assert len(png) < 100_000


def test_corruption_sweep_none_without_sweep():
    board = make_board(sweep=False)  # only p = 0 and p = 1
    assert plots.corruption_sweep(board.runs) is None
    other = [dict(r, randomization="random-pixels", p=0.0) for r in make_board().runs]
    assert plots.corruption_sweep(other) is None


def test_report_without_sweep_has_one_plot_fewer(tmp_path):
    write_report(make_board(sweep=False), tmp_path)
    images = _images((tmp_path / "leaderboard.html").read_text())
    # heatmap, per-environment distribution, Fig. 1a and the two measures; no Fig. 1b/1c without a sweep
    assert len(images) == 5 and all(img.startswith(PNG_MAGIC) for img in images)


def test_kind_order_natural_first():
    runs = [{"randomization": "random-pixels"}, {"randomization": "labels", "p": 1.0},
            {"randomization": "labels", "p": 0.5}, {"randomization": "none", "p": 0.0}]
    assert plots.kind_order(runs) == ["natural", "labels p=0.5", "labels p=1", "random-pixels"]


# -- terminal and formatting -----------------------------------------------------------------------

def test_leaderboard_table_renders():
    board = make_board(controls_ok=False)
    console = Console(record=True, width=150)
    console.print(leaderboard_table(board))
    text = console.export_text()
    for name in MEASURES:
        assert name in text
    assert "tiny-suite" in text and "Controls failed" in text and "separates" in text
    ok = Console(record=True, width=150)
    ok.print(leaderboard_table(make_board()))
    assert "Controls: OK" in ok.export_text()


def test_formatting_helpers():
    assert fmt(None) == "—" and fmt(float("nan")) == "—" and fmt(0.125) == "0.12" and fmt(3) == "3"
    assert fmt_ci(0.12, (0.05, 0.2)) == "0.12 [0.05, 0.20]"
    assert fmt_ci(0.12, None) == "0.12" and fmt_ci(None, (0.1, 0.2)) == "—"
    assert fmt_pct(0.987) == "98.7" and fmt_pct(None) == "—"
    assert run_columns([{"zeta": 1, "key": "k", "alpha": 2}])[: len(RUN_KEYS)] == list(RUN_KEYS)
    assert run_columns([{"zeta": 1, "key": "k", "alpha": 2}])[len(RUN_KEYS):] == ["alpha", "zeta"]



def test_report_files_are_readable_by_others(tmp_path):
    board = make_board()
    old = os.umask(0o022)
    try:
        paths = write_report(board, tmp_path / "out")
    finally:
        os.umask(old)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths)
    assert (tmp_path / "out" / FIGURES_DIR).stat().st_mode & 0o777 == 0o755


def test_the_heatmap_puts_each_value_in_its_cell_rows_robust_first_columns_by_setting_then_kind(monkeypatch):
    """What the heatmap draws, read back from matplotlib: the matrix handed to imshow and the tick
    labels of its rows and columns (PNG bytes alone cannot tell a transposed or shuffled map)."""
    import math
    from types import SimpleNamespace

    import numpy as np
    from matplotlib.axes import Axes

    drawn: dict[str, object] = {}
    real_imshow, real_xticks, real_yticks = Axes.imshow, Axes.set_xticks, Axes.set_yticks

    def imshow(self, data, *args, **kwargs):
        drawn["ax"], drawn["cells"] = self, np.ma.filled(np.ma.asarray(data, dtype=float), np.nan)
        return real_imshow(self, data, *args, **kwargs)

    def ticks(real, name):
        def spy(self, positions, labels=None, **kwargs):
            if self is drawn.get("ax"):
                drawn[name] = list(labels)
            return real(self, positions, labels, **kwargs)
        return spy

    monkeypatch.setattr(Axes, "imshow", imshow)
    monkeypatch.setattr(Axes, "set_xticks", ticks(real_xticks, "columns"))
    monkeypatch.setattr(Axes, "set_yticks", ticks(real_yticks, "rows"))

    def score(name, worst, mean, envs):
        return SimpleNamespace(name=name, worst_env_sign_error=worst, sign_error=mean, env_sign_errors=envs)

    scores = [
        score("b.third", 0.5, 0.4, {"A/gaussian": 0.5, "B/random-pixels": 0.3}),
        score("z.first", 0.1, 0.05, {"A/labels(p=1.0)": 0.1, "A/labels(p=0.5)": 0.0, "A/gaussian": 0.05,
                                     "B/random-pixels": 0.0}),
        score("c.last", math.nan, math.nan, {"A/gaussian": math.nan}),  # no scored pair anywhere
        score("a.second", 0.5, 0.3, {"A/labels(p=0.5)": 0.5, "B/random-pixels": 0.1}),
        score("n.absent", None, None, {}),  # no environment at all: no row
    ]
    assert plots.sign_error_heatmap(scores).startswith(PNG_MAGIC)
    assert drawn["rows"] == ["z.first", "a.second", "b.third", "c.last"]  # worst env, then mean, then name
    assert drawn["columns"] == ["labels(p=0.5)", "labels(p=1.0)", "gaussian", "random-pixels"]  # A's, then B's
    nan = math.nan
    expected = np.array([[0.0, 0.1, 0.05, 0.0], [0.5, nan, nan, 0.1], [nan, nan, 0.5, 0.3], [nan, nan, nan, nan]])
    np.testing.assert_array_equal(drawn["cells"], expected)
