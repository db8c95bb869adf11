"""`gentest runs` and `gentest doctor` on sound, damaged, missing and newer stores."""

from __future__ import annotations

import json
import os

import pytest

from gentest.cli import main
from gentest.spec import RunSpec
from gentest.store import STORE_SCHEMA, RunStore
from gentest.values import MeasureValue

from test_store import SPEC, save

OTHER = RunSpec(dataset="synthetic", model="mlp", randomization="none", p=0.0, seed=2)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def two_runs(tmp_path):
    store = RunStore(tmp_path / "store")
    save(store), save(store, OTHER)
    store.put_value(MeasureValue(SPEC.key, "m", "1", 0.5, None, 0.1))
    return store


@pytest.mark.parametrize("command", ["runs", "doctor"])
def test_a_missing_store_is_one_sentence_and_exit_2(tmp_path, capsys, command):
    code, out, err = run_cli(capsys, command, "--store", str(tmp_path / "nope"))
    assert code == 2 and out == ""
    assert err == (f"gentest: error: there is no run store at {tmp_path / 'nope'} (the folder does not exist; "
                   "give --store, or run gentest evaluate first)\n")
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(capsys, command, "--store", str(tmp_path / "file"))
    assert code == 2 and err == f"gentest: error: the run store {tmp_path / 'file'} is not a folder\n"


def test_runs_counts_with_the_right_plural(tmp_path, capsys):
    store = RunStore(tmp_path / "store")
    store.root.mkdir()
    code, out, _ = run_cli(capsys, "runs", "--store", str(store.root))
    assert code == 0 and out.strip() == f"0 runs in {store.root}"
    save(store)
    code, out, _ = run_cli(capsys, "runs", "--store", str(store.root))
    assert code == 0 and out.strip().splitlines()[-1] == f"1 run in {store.root}"
    assert "synthetic" in out


def test_runs_marks_a_damaged_run_and_moves_nothing(tmp_path, capsys):
    store = two_runs(tmp_path)
    (store.runs_dir / OTHER.key / "run.json").write_text("not json")
    code, out, _ = run_cli(capsys, "runs", "--store", str(store.root))
    assert code == 0
    assert f"run {OTHER.key} is damaged (run.json is not valid JSON" in out
    assert out.strip().splitlines()[-1] == f"1 run in {store.root}; 1 problem"
    assert (store.runs_dir / OTHER.key / "run.json").read_text() == "not json"  # a listing only reads
    code, out, err = run_cli(capsys, "runs", "--json", "--store", str(store.root))
    assert code == 0 and [r["key"] for r in json.loads(out)] == [SPEC.key]
    assert f"run {OTHER.key} is damaged" in err


def test_runs_verify_and_doctor_list_every_problem_and_exit_1(tmp_path, capsys):
    store = two_runs(tmp_path)
    code, out, _ = run_cli(capsys, "runs", "--verify", "--store", str(store.root))
    assert code == 0 and out.strip().splitlines()[-1] == f"2 runs in {store.root}"
    code, out, _ = run_cli(capsys, "doctor", "--store", str(store.root))
    assert code == 0 and out.strip() == f"2 runs checked in {store.root}: no problems"

    weights = store.runs_dir / SPEC.key / "weights.pt"
    blob = bytearray(weights.read_bytes())
    blob[-50] ^= 0xFF  # same size: only the checksum can tell
    weights.write_bytes(bytes(blob))
    (store.runs_dir / OTHER.key / "measures").mkdir()
    (store.runs_dir / OTHER.key / "measures" / "m@1.json").write_text("{")
    code, out, _ = run_cli(capsys, "runs", "--store", str(store.root))
    assert code == 0 and "damaged" not in out  # the cheap listing does not read weights
    code, out, _ = run_cli(capsys, "runs", "--verify", "--store", str(store.root))
    assert code == 1
    assert f"run {SPEC.key} is damaged (weights.pt fails its sha256 checksum); it will be retrained" in out
    assert f"the cached value of m@1 on run {OTHER.key} is unusable (not valid JSON)" in out
    assert out.strip().splitlines()[-1] == f"1 run in {store.root}; 2 problems"

    code, out, _ = run_cli(capsys, "doctor", "--store", str(store.root))
    assert code == 1 and out.strip().splitlines()[-1] == f"2 runs checked in {store.root}: 2 problems"
    assert weights.exists()  # without --fix nothing moves
    code, out, _ = run_cli(capsys, "doctor", "--fix", "--store", str(store.root))
    assert code == 0, out  # everything it found, it moved
    assert f"run {SPEC.key} was damaged (weights.pt fails its sha256 checksum); moved to" in out
    assert f"the cached value of m@1 on run {OTHER.key} was unusable (not valid JSON); moved to" in out
    assert " ".join(out.split()).endswith(f"2 runs checked in {store.root}: 2 problems, 2 moved to quarantine/")
    assert not weights.exists() and not (store.runs_dir / OTHER.key / "measures" / "m@1.json").exists()
    [moved_value] = (store.root / "quarantine" / "values" / OTHER.key).iterdir()
    assert moved_value.read_text() == "{" and moved_value.name.startswith("m@1.json.")
    # Nothing is touched by hand between the two: the store that --fix left checks clean.
    code, out, _ = run_cli(capsys, "doctor", "--store", str(store.root))
    assert code == 0 and out.strip() == f"1 run checked in {store.root}: no problems"


def test_doctor_fix_leaves_a_value_that_was_rewritten_soundly_meanwhile(tmp_path):
    store = two_runs(tmp_path)
    path = store.value_path(SPEC.key, "m", "1")
    good = path.read_text()
    path.write_text("{")
    [bad] = store.verify()
    path.write_text(good)  # another process recomputed it between the check and the move
    assert store.quarantine_value(bad) is None  # nothing left to fix
    assert path.read_text() == good and not (store.root / "quarantine").exists()


def test_a_store_of_a_newer_gentest_is_exit_2_in_one_sentence(tmp_path, capsys):
    store = two_runs(tmp_path)
    record = json.loads((store.runs_dir / SPEC.key / "run.json").read_text())
    record["schema"] = STORE_SCHEMA + 1
    (store.runs_dir / SPEC.key / "run.json").write_text(json.dumps(record))
    for command in ("runs", "doctor"):
        code, out, err = run_cli(capsys, command, "--store", str(store.root))
        assert code == 2 and out == "" and err.count("\n") == 1
        assert err.startswith(f"gentest: error: the store {store.root} was written by a newer gentest")


def test_train_names_a_damaged_run_on_stderr_and_retrains_it(tmp_path, capsys):
    from conftest import write_suite

    suite, store = write_suite(tmp_path, seeds=(0,), max_epochs=5), tmp_path / "store"
    assert run_cli(capsys, "train", str(suite), "--store", str(store), "--device", "cpu")[0] == 0
    [victim, _] = sorted((store / "runs").iterdir())
    (victim / "run.json").write_bytes(b"\xff\xfe")
    code, _, err = run_cli(capsys, "train", str(suite), "--store", str(store), "--device", "cpu")
    assert code == 0
    [moved] = (store / "quarantine").iterdir()
    assert (f"gentest: run {victim.name} was damaged (run.json is not UTF-8 text); moved to {moved}, "
            "it will be retrained\n") in err
    assert "1 already stored, 1 to train" in err and (victim / "run.json").is_file()


def test_status_tells_done_running_failed_and_pending_from_the_store_alone(tiny_store, tmp_path, capsys):
    """One run of the tiny suite stored, one locked by a live process (this one), one with a
    failure record, one untouched; a lock left by a dead process does not count as running."""
    import shutil

    from gentest.executors.status import record_failure
    from gentest.executors.work import UnitResult
    from gentest.locks import this_host

    from conftest import write_suite

    suite, trained, runs = tiny_store
    suite_file = write_suite(tmp_path)  # the same suite as the fixture's: the same run keys
    store = RunStore(tmp_path / "store")
    done, running, failed, pending = suite.specs
    store.runs_dir.mkdir(parents=True)
    shutil.copytree(trained.runs_dir / done.key, store.runs_dir / done.key)
    record_failure(store.root, UnitResult(failed.key, failed.label(), "failed", "ValueError: no luck"))
    store.locks_dir.mkdir()
    (store.locks_dir / f"{pending.key}.lock.json").write_text(json.dumps(  # its holder died
        {"key": pending.key, "host": this_host(), "pid": 999_999_999, "acquired": 0.0, "refreshed": 0.0, "token": "x"}))
    with store.try_lock(running.key):
        code, out, _ = run_cli(capsys, "status", str(suite_file), "--store", str(store.root), "--json")
        table_code, table, _ = run_cli(capsys, "status", str(suite_file), "--store", str(store.root))
    assert code == 0 and table_code == 0
    states = {row["key"]: (row["state"], row["message"]) for row in json.loads(out)}
    assert states[done.key] == ("done", "") and states[pending.key] == ("pending", "")
    assert states[failed.key] == ("failed", "ValueError: no luck")
    assert states[running.key][0] == "running" and f"by {this_host()} pid {os.getpid()} since" in states[running.key][1]
    assert "1 done, 1 running, 1 failed, 1 pending" in " ".join(table.split())
