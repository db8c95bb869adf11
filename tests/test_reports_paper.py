"""Reports a researcher can paste into a paper: Table 1, Figure 1, the heatmap, provenance, the
size budget, environments that never merge, and the honest states (nothing evaluated yet,
controls failed). All on synthetic leaderboards: no training."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import statistics
import sys
from pathlib import Path

import pytest

from gentest import plots
from gentest.leaderboard import Leaderboard, MeasureScore, MeasureValue
from gentest.pipeline import environment_names
from gentest.reports import (
    FIGURES_DIR, _md_cell, controls_exit_code, provenance, render_html, render_markdown, table1_rows, write_report,
)
from gentest.scoring import NOT_EVALUATED
from gentest.spec import RunSpec, TrainSettings, freeze

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_boards import standard_board  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(key, env, kind, p, seed, test_acc, steps, model="mlp"):
    return {"key": key, "dataset": "mnist1d", "model": model, "randomization": kind, "p": p, "seed": seed,
            "train_acc": 1.0, "test_acc": test_acc, "gap": 1.0 - test_acc, "steps_to_fit": steps, "wall_s": 1.0,
            "device": "cpu", "environment": env}


def _curve(test_accs):
    return [{"epoch": e, "steps": 10 * e, "train_loss": 2.0 / (1 + e), "train_acc": 0.5, "test_acc": a}
            for e, a in enumerate(test_accs)]


A, B = "mnist1d/mlp hidden=[512]", "mnist1d/mlp hidden=[512,512,512]"


def two_env_board(values=True) -> Leaderboard:
    """Two MLPs that differ only in depth, natural and random labels, two seeds each."""
    runs, curves = [], {}
    for env, base in ((A, 0.0), (B, 0.02)):
        for seed in (0, 1):
            for kind, p, acc, steps in (("none", 0.0, 0.80 + base + 0.02 * seed, 100 + 10 * seed),
                                        ("labels", 0.5, 0.50, 130 + 10 * seed),
                                        ("labels", 1.0, 0.10, 160 + 20 * seed)):
                key = f"{env[-5:]}{kind}{p}{seed}"
                runs.append(_run(key, env, kind, p, seed, acc, steps))
                curves[key] = _curve([0.3, acc + 0.05, acc])  # best along training: acc + 0.05
    scores, vals = [], []
    if values:
        scores = [MeasureScore(
            name="norm", family="norm", orientation="higher-worse", n_pairs=8, sign_error=0.0, sign_error_ci=(0.0, 0.0),
            worst_env_sign_error=0.0, worst_env=f"{A}/labels(p=1)", env_sign_errors={f"{A}/labels(p=1)": 0.0, f"{B}/labels(p=1)": 0.0},
            auroc=1.0, auroc_ci=(1.0, 1.0), kendall_tau=0.9, verdict="separates", errors=0,
            reason="sign-error 0.10 is neither <= 0.1 nor >= 0.9 & fine", psi=0.5, psi_by_axis={"model": 0.0, "randomization": 1.0},
        )]
        vals = [MeasureValue(r["key"], "norm", "1", r["gap"], None, 0.01, extra={"uncertainty": 0.001}) for r in runs]
    return Leaderboard(suite="two-env", gentest_version="9.9", runs=runs, curves=curves, measures=scores, values=vals,
                       controls_ok=bool(values), controls_message="" if values else NOT_EVALUATED, thresholds={"x": 0.1})


# -- Table 1 ------------------------------------------------------------------------------------------

def test_table1_by_hand():
    rows = table1_rows(two_env_board())
    assert [(r["setting"], r["randomization"]) for r in rows] == [
        (A, "natural"), (A, "labels p=0.5"), (A, "labels p=1"), (B, "natural"), (B, "labels p=0.5"), (B, "labels p=1")]
    nat_a = rows[0]
    assert nat_a["seeds"] == 2 and nat_a["test_acc"] == pytest.approx([0.80, 0.82])
    assert nat_a["best_test_acc"] == pytest.approx([0.85, 0.87])
    assert nat_a["steps_to_fit"] == [100.0, 110.0]
    md = render_markdown(two_env_board())
    # mean ± sample sd: test 81.0 ± 1.4 (sd of 80, 82 = sqrt(2)), best 86.0 ± 1.4, steps 105 ± 7
    assert f"| {A} | natural | 2 | 100.0 ± 0.0 | 81.0 ± 1.4 | 86.0 ± 1.4 | 105 ± 7 |" in md
    assert round(statistics.stdev([80, 82]), 1) == 1.4


def test_runs_that_differ_only_in_depth_never_merge(tmp_path):
    board = two_env_board()
    write_report(board, tmp_path, command=["gentest", "x"])
    with open(tmp_path / "measures.csv", newline="") as f:
        envs = {row["environment"] for row in csv.DictReader(f)}
    assert envs == {A, B}
    fits, left_out = plots.relative_time_to_fit(board.runs)
    assert set(fits) == {A, B} and left_out == 0
    # Fig. 1b by hand for A: seed 0 natural 100 -> (0, 1), p=0.5 130/100, p=1 160/100; seed 1 natural 110 -> 140/110, 180/110
    expected = sorted([(0.0, 1.0), (0.5, 1.3), (1.0, 1.6), (0.0, 1.0), (0.5, 140 / 110), (1.0, 180 / 110)])
    assert [p for p, _ in sorted(fits[A])] == [p for p, _ in expected]
    assert [r for _, r in sorted(fits[A])] == pytest.approx([r for _, r in expected])
    assert plots.environment_ids(board.runs) == {B: "E1", A: "E2"}  # sorted names: "," < "]"


def test_fig1b_leaves_out_runs_without_a_fit():
    board = two_env_board()
    board.runs[0]["steps_to_fit"] = None  # A, seed 0, natural: its twins have no reference
    fits, left_out = plots.relative_time_to_fit(board.runs)
    assert left_out == 3 and len(fits[A]) == 3


# -- the pieces of a paper ---------------------------------------------------------------------------

def test_report_has_heatmap_figure1_table1_and_provenance(tmp_path):
    paths = write_report(two_env_board(), tmp_path, command=["gentest", "evaluate", "my suite.toml"])
    names = sorted(p.name for p in (tmp_path / FIGURES_DIR).iterdir())
    assert names == ["env-sign-errors.png", "fig1a-train-loss.png", "fig1b-time-to-fit.png", "fig1c-test-error.png",
                     "heatmap-sign-error.png", "measure-norm.png"]
    assert len(paths) == 5 + len(names)
    page = (tmp_path / "leaderboard.html").read_text()
    for heading in ("Where each measure breaks", "Training (Zhang et al. Figure 1)", "Table 1", "How this report was made"):
        assert heading in page
    embedded = [base64.b64decode(b) for b in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', page)]
    assert sorted(embedded) == sorted((tmp_path / FIGURES_DIR / n).read_bytes() for n in names)
    data = json.loads((tmp_path / "leaderboard.json").read_text())
    prov = data["provenance"]
    assert prov["command"] == "gentest evaluate 'my suite.toml'"
    for key in ("gentest", "torch", "numpy", "python", "threads", "cpu_model", "platform"):
        assert prov.get(key), key
    assert prov["runs_device"] == "cpu"
    assert "gentest evaluate &#x27;my suite.toml&#x27;" in page
    md = (tmp_path / "leaderboard.md").read_text()
    assert "![sign-error per measure and environment](figures/heatmap-sign-error.png)" in md
    assert "- E1: `mnist1d/mlp hidden=[512,512,512]`" in md and "- E2: `mnist1d/mlp hidden=[512]`" in md
    assert data["table1"][0]["test_acc"]["mean"] == pytest.approx(0.81) and data["table1"][0]["test_acc"]["n"] == 2
    assert data["measures"][0]["psi"] == 0.5 and data["evaluated"] is True


def test_provenance_defaults_to_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/some/venv/bin/gentest", "report", "--out", "a b"])
    assert provenance()["command"] == "gentest report --out 'a b'"


def test_markdown_escapes_only_what_would_be_html():
    md = render_markdown(two_env_board())
    assert "neither <= 0.1 nor >= 0.9 & fine" in md
    assert "&lt;" not in md and "&gt;" not in md and "&amp;" not in md
    assert _md_cell("<script>x</script> a &amp; b | c") == "&lt;script>x&lt;/script> a &amp;amp; b \\| c"


# -- honest states ---------------------------------------------------------------------------------

def test_runs_without_values_render_and_say_nothing_was_evaluated(tmp_path):
    board = two_env_board(values=False)
    assert not board.evaluated
    write_report(board, tmp_path, command=["gentest", "report"])
    for name in ("leaderboard.md", "leaderboard.html"):
        text = (tmp_path / name).read_text()
        assert "Nothing has been evaluated yet" in text
        assert "is broken" not in text and "Controls failed" not in text and 'class="broken"' not in text
        assert board.runs[0]["key"] in text  # the runs are there
    assert "fig1a-train-loss.png" in {p.name for p in (tmp_path / FIGURES_DIR).iterdir()}
    assert json.loads((tmp_path / "leaderboard.json").read_text())["evaluated"] is False
    stream = io.StringIO()
    assert controls_exit_code(board, stream) == 0 and stream.getvalue() == ""


def test_failed_controls_exit_1_with_one_sentence():
    board = two_env_board()
    board.controls_ok = False
    board.controls_message = "control.gap has sign-error 0.5 instead of 0 (x), so the suite, not the measures, is broken."
    stream = io.StringIO()
    assert controls_exit_code(board, stream) == 1
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.count("broken") == 1
    assert out == f"gentest: controls failed: {board.controls_message}\n"
    page = render_html(board, figures={})
    assert page.count("is broken") == 1 and "not the measures" in page


# -- size of a standard-size report --------------------------------------------------------------

def test_standard_size_report_stays_under_3_mb():
    """A ``standard``-size board (192 runs; here 12 of its 60 measures, for speed): the fixed part
    (tables, heatmap, Figure 1) plus 60 measure plots at the largest size seen stays under 3 MB."""
    board = standard_board(n_measures=12)
    page = render_html(board)
    images = [len(b) for b in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', page)]
    small = images[-12:]  # the measure plots come last
    fixed = len(page.encode()) - sum(small)
    assert len(board.runs) == 192
    assert fixed + 60 * max(small) < 3_000_000, (fixed, max(small))
    assert max(small) < 20_000


# -- environments ------------------------------------------------------------------------------------

def test_environment_names_tell_every_setting_apart():
    def spec(model, model_args, **train):
        return RunSpec("mnist1d", model, model_args=freeze(model_args), train=TrainSettings(**train))
    specs = [spec("mlp", {"hidden": [512]}), spec("mlp", {"hidden": [512, 512, 512]}),
             spec("mlp", {"hidden": [512]}, weight_decay=5e-4), spec("cnn1d", {"channels": 32})]
    names = environment_names(specs)
    assert [names[s.key] for s in specs] == [
        "mnist1d/mlp hidden=[512] weight_decay=0.0",
        "mnist1d/mlp hidden=[512,512,512] weight_decay=0.0",
        "mnist1d/mlp hidden=[512] weight_decay=0.0005",
        "mnist1d/cnn1d channels=32 weight_decay=0.0",
    ]
    assert len(set(names.values())) == 4
    same = environment_names([spec("mlp", {"hidden": [512]})])
    assert list(same.values()) == ["mnist1d/mlp"]
