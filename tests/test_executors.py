"""Executors: the worker pool gives the same numbers as one worker, survives workers that die
or hang, and the submitit path runs end to end on local subprocesses."""

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

from processes import assert_racers_overlapped_and_each_trained, racer_env, wait_gone, workers_of

CHEAP = "control.gap,norm.param_l2,margin.output_margin,norm.log_prod_spectral"


def write_suite(folder: Path, seeds=(0, 1), name="tiny") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f"""
[suite]
name = "{name}"
[base]
dataset = {{ name = "synthetic", train_size = 96, test_size = 64 }}
model = {{ name = "mlp", hidden = [16] }}
lr = 0.1
batch_size = 32
max_epochs = 60
[axes]
randomization = ["none", "labels"]
seed = {list(seeds)}
""")
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def store_contents(store: Path) -> dict[str, object]:
    """Every run's final weights and every stored value, keyed by run and measure."""
    s = RunStore(store)
    out: dict[str, object] = {}
    for run in s.runs():
        out[run.key] = run.weights()["final"]
        for f in sorted((run.path / "measures").glob("*.json")):
            v = json.loads(f.read_text())
            out[f"{run.key}/{f.name}"] = (v["value"], v["error"])
    return out


def test_two_workers_give_bit_identical_weights_and_values_to_one(tmp_path, capsys):
    suite = write_suite(tmp_path)
    stores = {}
    for jobs in (1, 2):
        stores[jobs] = tmp_path / f"store{jobs}"
        code, _, err = run_cli(capsys, "evaluate", suite, "--store", stores[jobs], "--out", tmp_path / f"out{jobs}",
                               "--device", "cpu", "--jobs", jobs, "--threads", 1, "--measures", CHEAP)
        assert code == 0, err
        assert f"{jobs} worker{'s' if jobs > 1 else ''} on cpu, 1 torch thread each" in err
    one, two = store_contents(stores[1]), store_contents(stores[2])
    assert one.keys() == two.keys() and len(one) == 4 + 4 * 5  # 4 runs; 4 measures and control.param_count
    for k in one:
        if isinstance(one[k], dict):
            assert all(torch.equal(one[k][n], two[k][n]) for n in one[k]), k
        else:
            assert one[k] == two[k], k
    # The thread count a run was trained with is on record.
    run = next(RunStore(stores[2]).runs())
    assert run.versions["torch_threads"] == 1


HOSTILE = """
import ctypes, os, signal, time
from gentest import measure

@measure("hostile.exits", family="test", orientation="higher-worse")
def exits(ctx):
    os._exit(3)

@measure("hostile.segfaults", family="test", orientation="higher-worse")
def segfaults(ctx):
    ctypes.string_at(0)

@measure("hostile.hangs", family="test", orientation="higher-worse", timeout_s=1)
def hangs(ctx):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # its own timer cannot stop it
    time.sleep(3600)
"""


def test_a_measure_that_kills_or_hangs_its_worker_costs_that_value_only(tmp_path, capsys, monkeypatch):
    import gentest.executors.pool as pool

    monkeypatch.setattr(pool, "KILL_GRACE_S", 0.5)
    suite = write_suite(tmp_path, seeds=(0,))
    plugin = tmp_path / "hostile.py"
    plugin.write_text(HOSTILE)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "evaluate", suite, "--store", tmp_path / "store", "--out", out, "--device", "cpu",
                           "--jobs", 2, "--plugin", plugin,
                           "--measures", "hostile.exits,norm.param_l2,hostile.segfaults,hostile.hangs")
    assert code == 0, err  # measure errors are results, not failed runs
    rows = {(r["run_key"], r["measure"]): r for r in _csv(out / "measures.csv")}
    runs = {k for k, _ in rows}
    assert len(runs) == 2
    for key in runs:
        assert "killed its worker process: exited with code 3" in rows[key, "hostile.exits"]["error"]
        assert "killed its worker process: was killed by SIGSEGV" in rows[key, "hostile.segfaults"]["error"]
        assert "timed out after 1 s (its worker was killed)" in rows[key, "hostile.hangs"]["error"]
        assert rows[key, "norm.param_l2"]["error"] == "" and float(rows[key, "norm.param_l2"]["value"]) > 0
        assert rows[key, "control.gap"]["error"] == ""


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader(path.open()))


def test_a_failing_run_is_reported_the_others_go_on_and_a_rerun_retries_it(tmp_path, capsys):
    suite = tmp_path / "mixed.toml"
    # The Inception model needs images: its runs fail inside the worker, when the model is built.
    suite.write_text("""
[suite]
name = "mixed"
[base]
dataset = { name = "synthetic", train_size = 64, test_size = 32 }
max_epochs = 5
[axes]
model = [{ name = "mlp", hidden = [8] }, "inception"]
randomization = ["none"]
""")
    store = tmp_path / "store"
    code, _, err = run_cli(capsys, "train", suite, "--store", store, "--device", "cpu", "--jobs", 2)
    assert code == 1
    assert "1 run failed" in err and "inception" in err
    assert len(RunStore(store).keys()) == 1
    code, out, _ = run_cli(capsys, "status", suite, "--store", store, "--json")
    rows = json.loads(out)
    assert sorted(r["state"] for r in rows) == ["done", "failed"]
    assert any("inception" in r["message"] for r in rows)
    code, _, err = run_cli(capsys, "train", suite, "--store", store, "--device", "cpu", "--jobs", 2)
    assert code == 1 and "1 already stored, 1 to train" in err  # retries only what is missing


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--jobs", "many"], "--jobs takes a number of workers or 'auto'"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--slurm-partition", "gpu"], "--slurm-partition only apply with --executor slurm"),
    (["--runs-per-job", "4"], "--runs-per-job only apply with --executor slurm"),
    (["--no-wait"], "--no-wait only apply with --executor slurm"),
    (["--executor", "submitit-local", "--jobs", "2"], "--jobs applies to the pool executor"),
    (["--executor", "submitit-local", "--slurm-param", "oops"], "--slurm-param takes KEY=VALUE"),
])
def test_bad_executor_options_are_one_sentence_and_exit_2(tmp_path, capsys, argv, message):
    code, out, err = run_cli(capsys, "train", "ci", "--store", tmp_path / "s", *argv)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "runs").exists()  # caught before any work


def test_unknown_executor_is_refused_by_the_parser(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "ci", "--executor", "nope")
    assert code == 2 and "invalid choice: 'nope'" in err


@pytest.mark.parametrize("submitit_installed", [True, False])
def test_slurm_without_a_cluster_says_so_whether_or_not_submitit_is_installed(tmp_path, capsys, monkeypatch,
                                                                              submitit_installed):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here, even on a machine that has one
    if not submitit_installed:
        monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    code, _, err = run_cli(capsys, "train", "ci", "--store", tmp_path / "s", "--executor", "slurm", "--device", "cpu")
    assert code == 2 and "needs a Slurm cluster: sbatch is not on PATH" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "runs").exists()


def test_submitit_local_without_submitit_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    code, _, err = run_cli(capsys, "train", "ci", "--store", tmp_path / "s", "--executor", "submitit-local")
    assert code == 2 and 'pip install "gentest-harness[slurm]"' in err and "Traceback" not in err


def test_submitit_local_trains_a_suite_end_to_end_and_status_reports_it(tmp_path, capsys):
    pytest.importorskip("submitit")
    suite = write_suite(tmp_path)
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, "train", suite, "--store", store, "--device", "cpu",
                             "--executor", "submitit-local", "--runs-per-job", 2)
    assert code == 0, err
    assert "submitted 2 tasks" in err
    assert len(RunStore(store).keys()) == 4
    assert list((store / "submitit").iterdir())  # submitit's job folders, with the logs
    code, out, _ = run_cli(capsys, "status", suite, "--store", store, "--json")
    assert code == 0 and [r["state"] for r in json.loads(out)] == ["done"] * 4


BLOCKER = """
import os, time
from pathlib import Path
from gentest import measure

@measure("blocker.waits", family="test", orientation="higher-worse", timeout_s=3600)
def waits(ctx):
    pidfile = Path(os.environ["GENTEST_TEST_PIDFILE"])
    pidfile.with_suffix(".tmp").write_text(str(os.getpid()))
    pidfile.with_suffix(".tmp").rename(pidfile)  # whole, or not there
    time.sleep(3600)  # stands for any long unit: only the parent's death may end it
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_worker_exits_when_its_parent_is_killed_instead_of_finishing_its_unit(tmp_path):
    suite, plugin, pidfile = write_suite(tmp_path, seeds=(0,)), tmp_path / "blocker.py", tmp_path / "worker.pid"
    plugin.write_text(BLOCKER)
    argv = [sys.executable, "-m", "gentest", "evaluate", str(suite), "--store", str(tmp_path / "store"),
            "--out", str(tmp_path / "out"), "--device", "cpu", "--jobs", "1", "--plugin", str(plugin),
            "--measures", "blocker.waits"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "GENTEST_TEST_PIDFILE": str(pidfile)})
    try:
        deadline = time.monotonic() + 300
        while not pidfile.exists():  # the worker is inside the measure
            assert proc.poll() is None and time.monotonic() < deadline, "the measure never started"
            time.sleep(0.01)
        worker = int(pidfile.read_text())
        assert worker in workers_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    gone = wait_gone(worker, timeout=60)
    if not gone:
        os.kill(worker, signal.SIGKILL)  # leave no orphan behind a failed test
    assert gone, "the orphaned worker lives on"


SLOW = """
[suite]
name = "slow"
[base]
dataset = "mnist1d"
model = { name = "mlp", hidden = [256] }
lr = 0.01
max_epochs = 40  # a few seconds a run: long enough to be killed mid-training
[axes]
randomization = ["none", "labels"]
seed = [0, 1]
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker pids from /proc")
def test_killing_a_worker_mid_training_loses_only_that_run(tmp_path):
    suite, store = tmp_path / "slow.toml", tmp_path / "store"
    suite.write_text(SLOW)
    argv = [sys.executable, "-m", "gentest", "train", str(suite), "--store", str(store), "--device", "cpu", "--jobs", "2"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    s = RunStore(store)
    keys = [spec.key for spec in __import__("gentest.suites").suites.load_suite(str(suite)).specs]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until both workers hold a run's lock: both are training
        held = [k for k in keys if k not in s and (store / "locks").is_dir() and _held(s, k)]
        if len(held) == 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the workers never started training")
    victim = workers_of(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert "1 run failed" in err and "worker process was killed by SIGKILL" in err and "while training" in err
    assert len(s.keys()) == 3 and not list((store / "tmp").iterdir())  # the others landed; no debris
    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "3 already stored, 1 to train" in again.stderr
    assert len(s.keys()) == 4


def _held(store: RunStore, key: str) -> bool:
    lock = store.try_lock(key)
    if lock is None:
        return True
    lock.release()
    return False


def test_two_evaluates_racing_on_one_store_train_each_run_once_and_agree(tmp_path):
    suite = write_suite(tmp_path)
    store, race = tmp_path / "store", tmp_path / "race"
    race.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-m", "gentest", "evaluate", str(suite), "--store", str(store), "--out",
                          str(tmp_path / f"out{i}"), "--device", "cpu", "--jobs", "1", "--measures", CHEAP],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=racer_env(race, f"racer{i}", 2))
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # Both were training at once, each held at a start line until the other was in too.
    by_racer = assert_racers_overlapped_and_each_trained(race, ["racer0", "racer1"])
    assert sorted(by_racer["racer0"] + by_racer["racer1"]) == sorted(RunStore(store).keys())  # each run once
    trained = [err.count(": trained") for _, err in outs]
    assert sum(trained) == 4 and min(trained) >= 1  # each process trained, and each run by one of them
    assert len(RunStore(store).keys()) == 4 and not list((store / "tmp").iterdir())
    boards = [json.loads((tmp_path / f"out{i}" / "leaderboard.json").read_text()) for i in range(2)]
    assert boards[0]["measures"] == boards[1]["measures"] and boards[0]["runs"] == boards[1]["runs"]


def test_submitit_local_no_wait_returns_the_job_ids_and_status_follows_the_store(tmp_path, capsys):
    pytest.importorskip("submitit")
    suite = write_suite(tmp_path, seeds=(0,))
    store = tmp_path / "store"
    code, out, err = run_cli(capsys, "train", suite, "--store", store, "--device", "cpu",
                             "--executor", "submitit-local", "--runs-per-job", 2, "--no-wait")
    assert code == 0 and out.split() and all(part.strip() for part in out.split())  # the job id(s)
    assert "gentest status" in err
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        code, out, _ = run_cli(capsys, "status", suite, "--store", store, "--json")
        if [r["state"] for r in json.loads(out)] == ["done", "done"]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the submitted job never finished")


ENTRY_POINT_MODULE = """
import os
from gentest import measure

@measure("thirdparty.worker_pid", family="test", orientation="higher-worse")
def worker_pid(ctx):
    return float(os.getpid())  # where it ran
"""


def _install_entry_point(folder: Path) -> dict[str, str]:
    """A third-party distribution that registers a measure through the gentest.measures entry
    point, 'installed' by putting its module and dist-info on PYTHONPATH (no --plugin given)."""
    folder.mkdir()
    (folder / "thirdparty_measures.py").write_text(ENTRY_POINT_MODULE)
    info = folder / "thirdparty_measures-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-measures\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gentest.measures]\nthirdparty = thirdparty_measures\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("executor", [["--executor", "pool", "--jobs", "1"], ["--executor", "submitit-local"]],
                         ids=["pool", "submitit-local"])
def test_an_installed_entry_point_measure_is_computed_inside_the_workers(tmp_path, executor):
    if executor[1] == "submitit-local":
        pytest.importorskip("submitit")
    env = _install_entry_point(tmp_path / "site")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "gentest", "evaluate", str(write_suite(tmp_path, seeds=(0,))),
                             "--store", str(tmp_path / "store"), "--out", str(out), "--device", "cpu",
                             "--measures", "thirdparty.worker_pid", *executor],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    rows = [r for r in _csv(out / "measures.csv") if r["measure"] == "thirdparty.worker_pid"]
    assert len(rows) == 2 and all(r["error"] == "" for r in rows), rows
    pids = {int(float(r["value"])) for r in rows}
    assert proc.pid not in pids  # computed in a worker, which found the measure by its entry point alone


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker pids from /proc")
def test_ctrl_c_with_two_workers_stops_the_command_and_its_workers_and_keeps_only_whole_runs(tmp_path):
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group, workers included, while
    both workers train. The workers ignore it, the command stops them and exits 130."""
    suite, store = tmp_path / "slow.toml", tmp_path / "store"
    suite.write_text(SLOW)
    argv = [sys.executable, "-m", "gentest", "train", str(suite), "--store", str(store), "--device", "cpu", "--jobs", "2"]
    # A terminal's command starts with Ctrl-C at its default; a test runner started in the
    # background (CI, nohup) ignores SIGINT, and a child would inherit that and never stop.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    s = RunStore(store)
    keys = [spec.key for spec in __import__("gentest.suites").suites.load_suite(str(suite)).specs]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # both workers hold a run's lock: both are training
        if len([k for k in keys if k not in s and (store / "locks").is_dir() and _held(s, k)]) == 2:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the workers never started training")
    workers = workers_of(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "gentest: interrupted; finished runs are kept in the store" in err and "Traceback" not in err
    assert len(workers) == 2 and all(wait_gone(pid, timeout=60) for pid in workers)
    stored = s.keys()
    assert len(stored) < 4  # stopped mid-grid
    for key in stored:
        s.load(key, verify=True)  # what landed is whole
    assert not any(_held(s, k) for k in keys)  # no lock is left held
