"""The command line end to end: train, list, resume after a kill, and refuse bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gentest.cli import main
from gentest.store import RunStore

from conftest import write_suite
from processes import wait_gone, workers_of

ROW_KEYS = {"key", "dataset", "model", "randomization", "p", "seed", "train_acc", "test_acc", "gap", "steps_to_fit", "wall_s"}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_runs_json_then_second_train_trains_nothing(tmp_path, capsys):
    suite, store = write_suite(tmp_path), tmp_path / "store"
    code, out, err = run_cli(capsys, "train", str(suite), "--store", str(store), "--device", "cpu")
    assert code == 0
    assert "4 runs in the suite, 0 already stored, 4 to train" in err
    assert "train acc" in out and "steps to fit" in out

    code, out, _ = run_cli(capsys, "runs", "--json", "--store", str(store))
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4 and all(ROW_KEYS <= set(r) for r in rows)
    assert {(r["randomization"], r["seed"]) for r in rows} == {("none", 0), ("none", 1), ("labels", 0), ("labels", 1)}
    mtimes = {p: p.stat().st_mtime_ns for p in (store / "runs").iterdir()}

    code, _, err = run_cli(capsys, "train", str(suite), "--store", str(store), "--device", "cpu")
    assert code == 0 and "4 already stored, 0 to train" in err
    assert {p: p.stat().st_mtime_ns for p in (store / "runs").iterdir()} == mtimes


@pytest.mark.slow
def test_builtin_ci_suite_fits_random_labels(tmp_path, capsys):
    store = tmp_path / "store"
    code, _, _ = run_cli(capsys, "train", "ci", "--store", str(store), "--device", "cpu")
    assert code == 0
    code, out, _ = run_cli(capsys, "runs", "--json", "--store", str(store))
    rows = json.loads(out)
    assert len(rows) == 4 and all(r["train_acc"] == 1.0 for r in rows)
    natural = [r for r in rows if r["randomization"] == "none"]
    random = [r for r in rows if r["randomization"] == "labels"]
    assert min(r["test_acc"] for r in natural) > max(r["test_acc"] for r in random)
    assert all(abs(r["test_acc"] - 0.1) < 0.05 for r in random)  # chance on 400 test points


BAD_INPUT = [
    (["train", "no-such-suite"], "no suite 'no-such-suite'"),
    (["train", "ci", "--device", "tpu"], "unknown device 'tpu'"),
    (["train"], "the following arguments are required: suite"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUT)
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, capsys, argv, message):
    code, _, err = run_cli(capsys, *argv, *(["--store", str(tmp_path)] if len(argv) > 1 else []))
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_suite_file_names_file_and_key(tmp_path, capsys):
    suite = tmp_path / "typo.toml"
    suite.write_text("[base]\ndataset = 'mnist1d'\nmodel = 'mlp'\nbatchsize = 3\n")
    code, _, err = run_cli(capsys, "train", str(suite), "--store", str(tmp_path / "s"))
    assert code == 2 and "typo.toml: [base] key 'batchsize': unknown; allowed:" in err and err.count("\n") == 1


def test_missing_image_data_root_is_exit_2_naming_the_folder(tmp_path, capsys):
    suite = tmp_path / "cifar.toml"
    suite.write_text("[base]\ndataset = 'cifar10'\nmodel = 'mlp'\n")
    root = tmp_path / "nothing-here"
    code, _, err = run_cli(capsys, "train", str(suite), "--store", str(tmp_path / "s"), "--data-root", str(root))
    assert code == 2 and str(root) in err and "cifar-10-batches-py" in err and err.count("\n") == 1


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker pids from /proc")
def test_sigkill_mid_suite_then_rerun_finishes_with_no_corrupt_or_duplicate_run(tmp_path):
    suite = write_suite(tmp_path, randomizations=("none", "labels", "gaussian"), seeds=(0, 1), max_epochs=150)
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "gentest", "train", str(suite), "--store", str(store), "--device", "cpu"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not (store / "runs").is_dir() or not any((store / "runs").iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "first run never appeared"
        time.sleep(0.01)
    workers = workers_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Only once no worker can store anything more is the store's content what the rerun finds.
    assert workers and all(wait_gone(pid, timeout=60) for pid in workers), "a worker outlived its parent"

    store_obj = RunStore(store)
    stored = store_obj.keys()
    assert 1 <= len(stored) < 6, "the kill should land mid-suite"
    for key in stored:  # whatever was stored is whole and loadable
        run = store_obj.load(key)
        assert run.weights()["final"]

    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(stored)} already stored, {6 - len(stored)} to train" in done.stderr
    keys = store_obj.keys()
    assert len(keys) == 6 and len(set(keys)) == 6 and set(stored) <= set(keys)
    assert not (store / "tmp").exists() or list((store / "tmp").iterdir()) == []
    for key in keys:
        assert torch.load(store / "runs" / key / "weights.pt", weights_only=True)["initial"]
