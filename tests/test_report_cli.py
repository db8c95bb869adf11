"""`gentest report` scores one suite at a time: it never pairs runs of different suites, reports
a store's only suite without being told, and asks which when the store holds several."""

from __future__ import annotations

import json
import shutil

import pytest

from gentest.cli import main
from gentest.pipeline import stored_suites
from gentest.store import RunStore

from conftest import write_suite


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def two_suites(tmp_path_factory):
    """One store, two suites sharing their natural seed-0 run: tiny (none, labels) x (0, 1) and
    other (none, gaussian) x (0,)."""
    folder = tmp_path_factory.mktemp("two")
    tiny = write_suite(folder)
    other = write_suite(folder, randomizations=("none", "gaussian"), seeds=(0,), name="other.toml")
    other.write_text(other.read_text().replace('name = "tiny"', 'name = "other"'))
    store = folder / "store"
    for suite in (tiny, other):
        code = main(["evaluate", str(suite), "--store", str(store), "--out", str(folder / suite.stem),
                     "--measures", "norm.param_l2", "--device", "cpu"])
        assert code == 0
    return folder, store, tiny, other


def test_the_store_keeps_a_copy_of_each_suite_it_ran(two_suites):
    folder, store, tiny, other = two_suites
    assert (store / "suites" / "tiny.toml").read_text() == tiny.read_text()
    found = stored_suites(RunStore(store))
    assert set(found) == {"tiny", "other"}
    assert [len(s.specs) for s in found.values()] == [1 + 1, 4]  # sorted by name: other, tiny


def test_several_suites_in_the_store_ask_which(two_suites, capsys):
    folder, store, _, _ = two_suites
    code, out, err = run(capsys, "report", "--store", str(store))
    assert code == 2 and out == ""
    assert f"the store {store} holds runs of 2 suites: other (2 runs), tiny (4 runs); " \
           "report one at a time: gentest report SUITE" in err
    assert err.count("\n") == 1
    assert not (folder / "gentest-reports").exists()


def test_a_named_suite_is_scored_on_its_own_runs_only(two_suites, capsys):
    folder, store, tiny, other = two_suites
    shutil.move(other, folder / "moved.toml")  # the store's copy stands in for a file that is gone
    try:
        for name, expected in (("tiny", 4), ("other", 2)):
            code, _, _ = run(capsys, "report", name if name == "other" else str(tiny), "--store", str(store),
                             "--out", str(folder / f"re-{name}"))
            assert code == 0
            board = json.loads((folder / f"re-{name}" / "leaderboard.json").read_text())
            assert board["suite"] == name and len(board["runs"]) == expected
            first = json.loads((folder / name / "leaderboard.json").read_text())
            assert board["runs"] == first["runs"]
            assert {m["name"]: m["n_pairs"] for m in board["measures"]} == \
                {m["name"]: m["n_pairs"] for m in first["measures"]}
    finally:
        shutil.move(folder / "moved.toml", other)


def test_the_only_suite_is_reported_without_being_named(two_suites, tmp_path, capsys):
    folder, store, tiny, _ = two_suites
    single = tmp_path / "store"
    shutil.copytree(store, single)
    tiny_keys = {s.key for s in stored_suites(RunStore(single))["tiny"].specs}
    (single / "suites" / "other.toml").unlink()  # the gaussian run stays, as a leftover of no suite
    code, _, err = run(capsys, "report", "--store", str(single))
    assert code == 0, err
    board = json.loads((tmp_path / "gentest-reports" / "tiny" / "leaderboard.json").read_text())
    assert board["suite"] == "tiny" and {r["key"] for r in board["runs"]} == tiny_keys
    assert all(r["randomization"] != "gaussian" for r in board["runs"])


def test_runs_of_no_known_suite_need_a_suite_named(two_suites, tmp_path, capsys):
    _, store, _, _ = two_suites
    orphaned = tmp_path / "store"
    shutil.copytree(store, orphaned)
    shutil.rmtree(orphaned / "suites")
    code, _, err = run(capsys, "report", "--store", str(orphaned))
    assert code == 2 and "holds 5 runs of no suite it knows; name the suite file: gentest report SUITE" in err
    code, _, err = run(capsys, "report", "--store", str(tmp_path / "empty"))
    assert code == 2 and "holds no runs; run gentest evaluate first" in err
    code, _, err = run(capsys, "report", "nosuch", "--store", str(store))
    assert code == 2 and "no suite 'nosuch'" in err
