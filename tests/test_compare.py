"""gentest compare: two reports of one suite, verdict by verdict (hand-built leaderboards)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gentest.cli import main
from gentest.compare import compare, load_leaderboard
from gentest.errors import GentestError

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def board(suite: str = "s", runs=("k1", "k2"), **verdicts: tuple[str, float]) -> dict:
    return {"suite": suite, "runs": [{"key": k} for k in runs],
            "measures": [{"name": n.replace("_", "."), "verdict": v, "sign_error": se} for n, (v, se) in verdicts.items()]}


def write(tmp_path: Path, name: str, data: dict) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "leaderboard.json").write_text(json.dumps(data))
    return folder


def test_moves_to_inconclusive_are_not_contradictions_but_definite_flips_are():
    a = board(m_a=("separates", 0.0), m_b=("fails", 0.5), m_c=("inconclusive", 0.17), m_d=("fails", 0.4), m_e=("n/a", None))
    b = board(m_a=("inconclusive", 0.17), m_b=("inverts", 0.95), m_c=("separates", 0.0), m_d=("fails", 0.45), m_e=("n/a", None))
    c = compare(a, b)
    assert c.n_measures == 5 and c.same_runs
    assert [(x.measure, x.contradicts) for x in c.changes] == [("m.b", True), ("m.a", False), ("m.c", False)]
    assert [x.measure for x in c.contradictions] == ["m.b"]
    assert (c.inconclusive_a, c.inconclusive_b) == (1, 1)


def test_measures_in_one_report_only_and_other_runs_are_said():
    c = compare(board(m_a=("fails", 0.5), m_x=("fails", 0.5)), board(runs=("k1", "k3"), m_a=("fails", 0.5), m_y=("fails", 0.5)))
    assert c.only_a == ["m.x"] and c.only_b == ["m.y"] and not c.same_runs and c.changes == []


def test_reports_of_different_suites_are_refused():
    with pytest.raises(GentestError, match="different suites"):
        compare(board("quick"), board("standard"))


def test_cli_exit_codes(tmp_path, capsys):
    a = write(tmp_path, "a", board(m_a=("separates", 0.0), m_b=("fails", 0.5)))
    moved = write(tmp_path, "moved", board(m_a=("inconclusive", 0.2), m_b=("fails", 0.5)))
    flipped = write(tmp_path, "flipped", board(m_a=("fails", 0.3), m_b=("fails", 0.5)))
    assert main(["compare", str(a), str(moved)]) == 0
    out = capsys.readouterr().out
    assert "moves  m.a: separates -> inconclusive" in out and "1 of 2 verdicts differ: 0 contradict" in out
    assert main(["compare", str(a), str(flipped / "leaderboard.json")]) == 1
    assert "CONTRADICTS  m.a: separates -> fails" in capsys.readouterr().out
    assert main(["compare", str(a), str(flipped), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["changes"][0]["contradicts"] is True


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "no leaderboard.json there"),
    (lambda p: (p / "x.json").write_text("{oops") and p / "x.json", "is not valid JSON"),
    (lambda p: (p / "y.json").write_text("[1]") and p / "y.json", "is not a gentest leaderboard"),
])
def test_bad_reports_are_one_sentence_and_exit_2(tmp_path, capsys, make, message):
    good = write(tmp_path, "good", board(m_a=("fails", 0.5)))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(good), str(make(empty))]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_committed_report_agrees_with_itself():
    board_ = load_leaderboard(REPORTS / "quick")
    c = compare(board_, board_)
    assert c.changes == [] and c.n_measures == len(board_["measures"]) > 50


@pytest.mark.parametrize("suite", ["quick", "standard"])
def test_the_committed_two_thread_boards_contradict_nothing(suite):
    # What README and reports/thread-check/README.md claim: other networks, no contradiction.
    one = load_leaderboard(REPORTS / suite)
    two = load_leaderboard(REPORTS / "thread-check" / f"{suite}-2threads")
    c = compare(one, two)
    assert c.same_runs and c.n_measures == len(one["measures"]) > 50
    assert c.contradictions == []
    assert c.changes  # the networks differ, and some verdicts do move: the comparison compared something


def test_unreliable_and_chance_refine_each_other_and_schema_1_fails_compares_as_their_range():
    a = board(m_a=("unreliable", 0.3), m_b=("fails", 0.5), m_c=("separates", 0.0), m_d=("chance", 0.5))
    b = board(m_a=("chance", 0.45), m_b=("unreliable", 0.3), m_c=("unreliable", 0.2), m_d=("inverts", 0.95))
    c = compare(a, b)
    kinds = {x.measure: x.kind for x in c.changes}
    assert kinds == {"m.a": "refines", "m.b": "refines", "m.c": "contradicts", "m.d": "contradicts"}
    lines = "\n".join(__import__("gentest.compare", fromlist=["render"]).render(c, "A", "B"))
    assert "4 of 4 verdicts differ: 2 contradict" in lines and "2 refine" in lines and "0 move to or from inconclusive" in lines
