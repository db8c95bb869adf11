"""Fault injection on the run store (issue 10, reproduction 5): every damaged file is found,
named, moved aside or ignored, and then retrained or recomputed to the very same numbers;
never a traceback, never a silently dropped run, never a value nobody can vouch for."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from conftest import write_suite
from gentest.errors import GentestError
from gentest.evaluation import evaluate
from gentest.locks import this_host
from gentest.pipeline import build_leaderboard, choose_measures
from gentest.runner import train_missing
from gentest.store import STORE_SCHEMA, BadValue, DamagedRun, DamagedRunError, NewerStoreError, RunStore
from gentest.suites import load_suite

CPU = torch.device("cpu")
MEASURES = ["norm.param_l2", "norm.frobenius_distance_from_init"]  # both depend on the weights


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A tiny suite (4 runs) trained and measured once; each test damages a copy."""
    root = tmp_path_factory.mktemp("pristine")
    suite = load_suite(str(write_suite(root, max_epochs=10)))  # fitted or not: only the files matter
    store = RunStore(root / "store")
    runs = train_missing(suite.specs, store, CPU)
    measures = choose_measures(MEASURES)
    values = evaluate(runs, measures, store, CPU)
    board = build_leaderboard(suite.name, runs, measures, values)
    return suite, root / "store", measures, board


class Damaged:
    """A copy of the pristine store, and the way back: train what is missing, measure."""

    def __init__(self, pristine, folder: Path):
        self.suite, source, self.measures, self.board = pristine
        self.path = folder / "store"
        shutil.copytree(source, self.path)
        self.keys = [s.key for s in self.suite.specs]
        self.seen: list = []

    def run_dir(self, i: int) -> Path:
        return self.path / "runs" / self.keys[i]

    def value_file(self, i: int, measure: str = MEASURES[0]) -> Path:
        return self.run_dir(i) / "measures" / f"{measure}@1.json"

    def heal(self, **store_options):
        """What `gentest evaluate` does: returns the store, the leaderboard and the values."""
        store = RunStore(self.path, on_damage=self.seen.append, **store_options)
        runs = train_missing(self.suite.specs, store, CPU)
        values = evaluate(runs, self.measures, store, CPU)
        return store, build_leaderboard(self.suite.name, runs, self.measures, values)

    def assert_same_board(self, board) -> None:
        """Same measure values and scores as the undamaged store (retraining is bit-exact on CPU)."""
        assert {(v.run_key, v.measure): v.value for v in board.values} == {
            (v.run_key, v.measure): v.value for v in self.board.values
        }
        assert [m.to_json() for m in board.measures] == [m.to_json() for m in self.board.measures]
        drop = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
        assert drop(board.runs) == drop(self.board.runs)


@pytest.fixture
def damaged(pristine, tmp_path) -> Damaged:
    return Damaged(pristine, tmp_path)


def only_quarantined(d: Damaged, store: RunStore, i: int, reason: str) -> DamagedRun:
    [damage] = store.damaged()
    assert damage.key == d.keys[i] and damage.reason == reason
    assert damage.moved_to is not None and damage.moved_to.parent == d.path / "quarantine"
    assert damage.moved_to.name.startswith(d.keys[i] + ".")
    assert damage.message() == (
        f"run {d.keys[i]} was damaged ({reason}); moved to {damage.moved_to}, it will be retrained"
    )
    assert d.seen == [damage]  # reported as it happened, once
    assert d.keys[i] in store and json.loads((d.run_dir(i) / "run.json").read_text())["schema"] == STORE_SCHEMA
    return damage


# ---- damaged runs: quarantined, retrained to the same weights, the same leaderboard -------

def test_unreadable_run_jsons_are_quarantined_and_the_runs_retrained_bit_for_bit(damaged):
    contents = [b"{\"key\": garbage", b"\xff\xfe\x00\x01 not text", b"", b"[1, 2]"]
    reasons = [
        "run.json is not valid JSON (Expecting value: line 1 column 9 (char 8))",
        "run.json is not UTF-8 text",
        "run.json is empty",
        "run.json does not hold a JSON object",
    ]
    finals = [torch.load(damaged.run_dir(i) / "weights.pt", weights_only=True)["final"] for i in range(4)]
    for i, content in enumerate(contents):
        (damaged.run_dir(i) / "run.json").write_bytes(content)
    store, board = damaged.heal()
    assert [(d.key, d.reason) for d in store.damaged()] == list(zip(damaged.keys, reasons))
    assert damaged.seen == store.damaged()  # reported as it happened, once each
    for i, damage in enumerate(store.damaged()):
        assert damage.moved_to.parent == damaged.path / "quarantine" and damage.moved_to.name.startswith(damage.key + ".")
        assert damage.message() == (
            f"run {damage.key} was damaged ({reasons[i]}); moved to {damage.moved_to}, it will be retrained"
        )
        assert (damage.moved_to / "run.json").read_bytes() == contents[i]  # the evidence is kept
        assert json.loads((damaged.run_dir(i) / "run.json").read_text())["schema"] == STORE_SCHEMA
        retrained = store.load(damage.key).weights()["final"]
        assert all(torch.equal(retrained[k], finals[i][k]) for k in finals[i])
    damaged.assert_same_board(board)


def test_a_run_folder_without_run_json_is_retrained_not_a_directory_not_empty_crash(damaged):
    (damaged.run_dir(2) / "run.json").unlink()
    store, board = damaged.heal()
    only_quarantined(damaged, store, 2, "run.json is missing")
    damaged.assert_same_board(board)


def test_a_run_json_lacking_a_field_or_naming_another_run_is_damage(damaged):
    record = json.loads((damaged.run_dir(0) / "run.json").read_text())
    del record["metrics"]["gap"]
    (damaged.run_dir(0) / "run.json").write_text(json.dumps(record))
    shutil.copy(damaged.run_dir(3) / "run.json", damaged.run_dir(1) / "run.json")
    store, board = damaged.heal()
    assert {d.key: d.reason for d in store.damaged()} == {
        damaged.keys[0]: "run.json's metrics lack gap",
        damaged.keys[1]: f"run.json names another run ({damaged.keys[3]})",
    }
    damaged.assert_same_board(board)


def test_a_truncated_weights_file_is_caught_by_its_size_before_training_is_skipped(damaged):
    weights = damaged.run_dir(3) / "weights.pt"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    store, board = damaged.heal()
    only_quarantined(damaged, store, 3, f"weights.pt has {size // 2} bytes, run.json recorded {size}")
    damaged.assert_same_board(board)


def test_weights_failing_their_checksum_are_caught_when_read_and_retrained_next_time(damaged):
    weights = damaged.run_dir(0) / "weights.pt"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, one flipped byte
    weights.write_bytes(bytes(blob))
    store = RunStore(damaged.path)
    assert damaged.keys[0] in store  # the cheap check (size) passes
    with pytest.raises(DamagedRunError, match=f"run {damaged.keys[0]} was damaged \\(weights.pt fails its sha256 checksum\\); moved to"):
        store.load(damaged.keys[0]).weights()
    assert damaged.keys[0] not in store and store.damaged()[0].moved_to.is_dir()
    _, board = damaged.heal()  # the next evaluate retrains it and recomputes its values
    damaged.assert_same_board(board)


def test_load_verify_and_store_verify_check_the_checksum_up_front(damaged):
    weights = damaged.run_dir(2) / "weights.pt"
    blob = bytearray(weights.read_bytes())
    blob[-100] ^= 0x01
    weights.write_bytes(bytes(blob))
    store = RunStore(damaged.path, heal=False)
    assert store.load(damaged.keys[2]).key == damaged.keys[2]
    with pytest.raises(DamagedRunError, match="fails its sha256 checksum"):
        store.load(damaged.keys[2], verify=True)
    problems = RunStore(damaged.path, heal=False).verify()
    assert [(p.key, p.reason, p.moved_to) for p in problems] == [(damaged.keys[2], "weights.pt fails its sha256 checksum", None)]
    assert weights.exists()  # not healing: reported, left in place


def test_a_run_locked_by_a_live_process_is_reported_but_not_moved(damaged):
    (damaged.run_dir(1) / "run.json").write_text("{")
    locks = damaged.path / "locks"
    locks.mkdir(exist_ok=True)
    (locks / f"{damaged.keys[1]}.lock.json").write_text(json.dumps(
        {"host": this_host(), "pid": os.getppid(), "refreshed": time.time(), "token": "x"}))
    store = RunStore(damaged.path)
    assert damaged.keys[1] not in store and damaged.run_dir(1).is_dir()
    [damage] = store.damaged()
    assert damage.moved_to is None and str(damage) == (
        f"run {damaged.keys[1]} is damaged ({damage.reason}); it will be retrained")
    assert damage.reason.startswith("run.json is not valid JSON")


def test_saving_over_a_damaged_folder_moves_it_aside_even_when_not_healing(damaged):
    (damaged.run_dir(0) / "run.json").unlink()
    store, board = damaged.heal(heal=False)
    [damage] = store.damaged()
    assert damage.reason == "run.json is missing" and damage.moved_to is not None and damage.moved_to.is_dir()
    damaged.assert_same_board(board)


def test_a_store_written_by_a_newer_gentest_is_one_clear_sentence(damaged):
    record = json.loads((damaged.run_dir(0) / "run.json").read_text())
    record["schema"] = STORE_SCHEMA + 1
    (damaged.run_dir(0) / "run.json").write_text(json.dumps(record))
    with pytest.raises(NewerStoreError, match=(
        f"the store {damaged.path} was written by a newer gentest \\(run {damaged.keys[0]} has schema {STORE_SCHEMA + 1}; "
        f"this gentest .* reads schema {STORE_SCHEMA} and older\\): upgrade gentest or use another --store")):
        damaged.heal()
    assert isinstance(NewerStoreError("x"), GentestError)
    assert damaged.run_dir(0).is_dir() and not (damaged.path / "quarantine").exists()  # nothing touched


# ---- unusable value files: ignored, named, recomputed ------------------------------------

def edit_value(path: Path, reseal: bool = True, **changes) -> None:
    """Change a value file's fields; ``reseal`` recomputes its checksum (a deliberate forgery)."""
    d = json.loads(path.read_text())
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    if reseal:
        body = {k: v for k, v in d.items() if k != "checksum"}
        d["checksum"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("damage, reason", [
    (lambda d: d.value_file(1).write_bytes(b""), "empty"),
    (lambda d: d.value_file(1).write_bytes(b'{"run_key": "'), "not valid JSON"),
    (lambda d: d.value_file(1).write_bytes(b"\x80\x81"), "not UTF-8 text"),
    (lambda d: shutil.copy(d.value_file(3), d.value_file(1)), "names another run ({k3})"),
    (lambda d: shutil.copy(d.value_file(1, MEASURES[1]), d.value_file(1)), f"names another measure ({MEASURES[1]})"),
    (lambda d: edit_value(d.value_file(1), reseal=False, value=123.0), "fails its checksum (edited after it was written)"),
    (lambda d: edit_value(d.value_file(1), seconds=...), "lacks 'seconds'"),
    (lambda d: edit_value(d.value_file(1), value=None, error=None), "holds neither a value nor an error"),
    (lambda d: edit_value(d.value_file(1), run_weights_sha256="0" * 64), "was computed on other weights than the run's"),
])
def test_an_unusable_value_file_is_named_and_recomputed(damaged, damage, reason):
    weights_mtime = (damaged.run_dir(1) / "weights.pt").stat().st_mtime_ns
    damage(damaged)
    store, board = damaged.heal()
    reason = reason.format(k3=damaged.keys[3])
    assert d_messages(damaged) == [
        f"the cached value of {MEASURES[0]}@1 on run {damaged.keys[1]} is unusable ({reason}); it will be recomputed"
    ]
    assert store.damaged() == [] and (damaged.run_dir(1) / "weights.pt").stat().st_mtime_ns == weights_mtime
    assert store.bad_values() == []  # recomputed and rewritten: no longer bad
    assert store.get_value(damaged.keys[1], MEASURES[0], "1") is not None
    damaged.assert_same_board(board)


def d_messages(d: Damaged) -> list[str]:
    assert all(isinstance(x, BadValue) for x in d.seen)
    return [x.message() for x in d.seen]


def test_a_value_file_of_a_newer_schema_is_one_clear_sentence(damaged):
    edit_value(damaged.value_file(0), schema=STORE_SCHEMA + 1)
    with pytest.raises(NewerStoreError, match=f"a value file of run {damaged.keys[0]} has schema {STORE_SCHEMA + 1}, written by a newer gentest"):
        RunStore(damaged.path).get_value(damaged.keys[0], MEASURES[0], "1")


# ---- stores written before checksums: still read, never quarantined for that --------------

def make_old(d: Damaged) -> None:
    for i in range(4):
        record = json.loads((d.run_dir(i) / "run.json").read_text())
        record.pop("schema"), record.pop("weights")
        (d.run_dir(i) / "run.json").write_text(json.dumps(record))
        for value in (d.run_dir(i) / "measures").glob("*.json"):
            edit_value(value, reseal=False, schema=..., checksum=..., run_weights_sha256=...)


def test_an_old_store_without_schema_or_checksums_loads_as_it_is(damaged):
    make_old(damaged)
    value_mtime = damaged.value_file(2).stat().st_mtime_ns
    store, board = damaged.heal()
    assert store.damaged() == [] and store.bad_values() == [] and damaged.seen == []
    run = store.load(damaged.keys[2], verify=True)  # no checksum: verify means it loads
    assert run.schema == 0 and run.weights_sha256 is None and run.weights()["final"]
    assert damaged.value_file(2).stat().st_mtime_ns == value_mtime  # used, not recomputed
    damaged.assert_same_board(board)


def test_an_old_store_with_a_truncated_weights_file_is_caught_when_it_is_read(damaged):
    make_old(damaged)
    weights = damaged.run_dir(1) / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    store = RunStore(damaged.path)
    assert damaged.keys[1] in store  # no recorded size to compare with
    with pytest.raises(DamagedRunError, match="weights.pt does not load"):
        store.load(damaged.keys[1]).weights()
    assert damaged.keys[1] not in store and store.damaged()[0].moved_to.is_dir()


# ---- all at once (issue 10's "done when") --------------------------------------------------

def test_a_store_with_four_kinds_of_damage_heals_to_the_same_leaderboard(damaged):
    (damaged.run_dir(0) / "run.json").write_bytes(b"\x89PNG garbage")
    (damaged.run_dir(1) / "run.json").unlink()
    weights = damaged.run_dir(2) / "weights.pt"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:-7])
    damaged.value_file(3, MEASURES[1]).write_text("garbage")
    store, board = damaged.heal()
    assert {d.key: d.reason for d in store.damaged()} == {
        damaged.keys[0]: "run.json is not UTF-8 text",
        damaged.keys[1]: "run.json is missing",
        damaged.keys[2]: f"weights.pt has {size - 7} bytes, run.json recorded {size}",
    }
    assert all(d.moved_to is not None for d in store.damaged())
    assert [str(x) for x in damaged.seen if isinstance(x, BadValue)] == [
        f"the cached value of {MEASURES[1]}@1 on run {damaged.keys[3]} is unusable (not valid JSON); it will be recomputed"
    ]
    assert len(list((damaged.path / "quarantine").iterdir())) == 3
    damaged.assert_same_board(board)
    assert RunStore(damaged.path).verify() == []  # healed
