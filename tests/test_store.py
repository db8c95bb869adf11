"""The store round-trips a run, writes atomically, and never unpickles arbitrary objects."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from gentest.errors import GentestError
from gentest.spec import RunSpec
from gentest.locks import this_host
from gentest.store import DamagedRunError, RunStore

SPEC = RunSpec(dataset="synthetic", model="mlp", randomization="labels", p=1.0, seed=2)
METRICS = {
    "train_acc": 1.0, "test_acc": 0.3, "gap": 0.7, "fitted": True, "epochs": 4,
    "steps_to_fit": 40, "wall_s": 0.5, "device": "cpu",
}
WEIGHTS = {
    "initial": {"0.weight": torch.zeros(2, 3)},
    "final": {"0.weight": torch.ones(2, 3)},
    "randomization": {"y_train": torch.tensor([1, 0, 2])},
}


def save(store: RunStore, spec: RunSpec = SPEC):
    return store.save(spec, METRICS, [{"epoch": 0}], {"kind": "labels", "effective_corruption": 0.6}, WEIGHTS)


def test_round_trip(tmp_path):
    store = RunStore(tmp_path)
    run = save(store)
    assert SPEC.key in store and store.keys() == [SPEC.key]
    loaded = store.load(SPEC.key)
    assert loaded.spec == SPEC and loaded.metrics == METRICS and loaded.curve == [{"epoch": 0}]
    w = loaded.weights()
    assert torch.equal(w["final"]["0.weight"], torch.ones(2, 3))
    assert torch.equal(w["randomization"]["y_train"], torch.tensor([1, 0, 2]))
    assert loaded.versions["torch"] == torch.__version__
    row = run.row()
    for k in ("key", "dataset", "model", "randomization", "p", "seed", "train_acc", "test_acc", "gap", "steps_to_fit", "wall_s"):
        assert k in row
    assert row["effective_corruption"] == 0.6


def test_weights_load_refuses_arbitrary_pickles(tmp_path):
    store = RunStore(tmp_path)
    run = save(store)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    # The attacker rewrites run.json's checksum too, so the file reaches torch.load.
    torch.save({"final": Evil()}, run.path / "weights.pt")
    blob = (run.path / "weights.pt").read_bytes()
    record = json.loads((run.path / "run.json").read_text())
    record["weights"].update(size=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    (run.path / "run.json").write_text(json.dumps(record))
    run = store.load(SPEC.key)
    with pytest.raises(DamagedRunError, match="[Ww]eights only load failed|Unsupported global") as e:
        run.weights()
    assert "not tensors" in e.value.damage.reason and e.value.damage.moved_to.parent == store.quarantine_dir
    assert SPEC.key not in store


def test_a_crash_mid_write_leaves_no_run_and_its_debris_is_cleaned(tmp_path):
    store = RunStore(tmp_path)

    def crash(*_):
        raise RuntimeError("killed")

    orig = torch.save
    torch.save = crash  # the weights write dies half way
    try:
        with pytest.raises(RuntimeError):
            save(store)
    finally:
        torch.save = orig
    assert store.keys() == [] and SPEC.key not in store
    # A SIGKILL would not have run the `finally` cleanup: simulate its staging folder.
    dead = store.tmp_dir / f"{SPEC.key}.{this_host()}.999999999.dead"
    dead.mkdir(parents=True)
    (dead / "weights.pt").write_bytes(b"half")
    assert store.clean_debris() == 1
    assert list(store.tmp_dir.iterdir()) == []
    save(store)
    assert store.keys() == [SPEC.key]


def test_saving_a_key_twice_keeps_one_run(tmp_path):
    store = RunStore(tmp_path)
    save(store)
    first = json.loads((store.runs_dir / SPEC.key / "run.json").read_text())
    save(store)  # e.g. two workers finished the same spec
    assert store.keys() == [SPEC.key]
    assert json.loads((store.runs_dir / SPEC.key / "run.json").read_text()) == first
    assert list(store.tmp_dir.iterdir()) == []


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(GentestError, match="no run 'abc' in the store"):
        RunStore(tmp_path).load("abc")
