"""Per-run locks (gentest.locks through RunStore.try_lock/lock) and debris cleaning shared by
many processes and hosts: a live holder keeps its run, a dead one on this host loses it at
once, one on another host only after its lease; another host's work in progress survives
clean_debris."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gentest import locks
from gentest.errors import GentestError
from gentest.locks import LockTimeout, RunLock, this_host
from gentest.store import RunStore

KEY = "0123456789abcdef"
FOREIGN = "some-other-node"
DEAD_PID = 999_999_999  # above any pid_max: never a live process


def record_of(store: RunStore, key: str = KEY) -> Path:
    return store.locks_dir / f"{key}.lock.json"


def plant_record(store: RunStore, host: str, pid: int, age_s: float, key: str = KEY) -> None:
    """A holder record as another process (here or elsewhere) would have left it."""
    store.locks_dir.mkdir(parents=True, exist_ok=True)
    then = time.time() - age_s
    info = {"key": key, "host": host, "pid": pid, "acquired": then, "refreshed": then, "token": "theirs"}
    record_of(store, key).write_text(json.dumps(info))


def test_try_lock_is_exclusive_records_its_holder_and_release_frees_it(tmp_path):
    store = RunStore(tmp_path)
    held = store.try_lock(KEY)
    assert isinstance(held, RunLock) and held.held
    info = json.loads(record_of(store).read_text())
    assert info["host"] == this_host() and info["pid"] == os.getpid() and info["acquired"] <= time.time()
    assert store.lock_holder(KEY)["token"] == info["token"]
    assert store.try_lock(KEY) is None  # a second claim, even from this process, is refused
    assert store.try_lock("fedcba9876543210") is not None  # other runs are independent
    held.release()
    held.release()  # idempotent
    assert not held.held and not record_of(store).exists()
    with store.try_lock(KEY) as again:
        assert again.held
    assert not record_of(store).exists()


def test_blocking_lock_times_out_naming_the_holder(tmp_path):
    store = RunStore(tmp_path)
    with store.try_lock(KEY):
        with pytest.raises(LockTimeout, match=f"run {KEY} stayed locked by {this_host()} pid {os.getpid()}") as e:
            store.lock(KEY, timeout=0.1)
        assert isinstance(e.value, GentestError)
    with store.lock(KEY, timeout=0.1) as held:
        assert held.held


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from gentest import locks
    held = locks.try_lock(Path(sys.argv[1]), sys.argv[2])
    print("locked" if held else "refused", flush=True)
    time.sleep(600)
""")


def test_a_holder_killed_on_this_host_loses_its_lock_at_once(tmp_path):
    store = RunStore(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.locks_dir), KEY], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert store.try_lock(KEY) is None  # alive: its lock holds
        assert store.lock_holder(KEY)["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The kernel dropped its OS lock; its record stays behind and names a dead pid.
    assert store.lock_holder(KEY)["pid"] == proc.pid
    with store.try_lock(KEY) as held:
        assert held.held and store.lock_holder(KEY)["pid"] == os.getpid()


# Where the file system does not forward OS locks between hosts, the holder record alone
# decides; these tests plant records with the OS lock free, as another host would see it.

def test_a_record_of_a_dead_pid_on_this_host_is_broken(tmp_path):
    store = RunStore(tmp_path)
    plant_record(store, this_host(), DEAD_PID, age_s=1)
    with store.try_lock(KEY) as held:
        assert held.held and store.lock_holder(KEY)["token"] == held.info["token"]


def test_a_record_of_a_live_pid_on_this_host_is_respected(tmp_path):
    store = RunStore(tmp_path)
    plant_record(store, this_host(), os.getppid(), age_s=1)
    assert store.try_lock(KEY) is None
    assert store.lock_holder(KEY)["token"] == "theirs"  # untouched


def test_another_hosts_record_holds_for_its_lease_then_is_broken(tmp_path):
    store = RunStore(tmp_path)  # default lease: 6 h
    plant_record(store, FOREIGN, os.getpid(), age_s=5 * 3600)  # its pid means nothing here
    assert store.try_lock(KEY) is None
    plant_record(store, FOREIGN, DEAD_PID, age_s=5 * 3600)  # nor does a dead-looking one
    assert store.try_lock(KEY) is None
    plant_record(store, FOREIGN, os.getpid(), age_s=7 * 3600)
    with store.try_lock(KEY) as held:
        assert held.held and store.lock_holder(KEY)["host"] == this_host()

    short = RunStore(tmp_path, lease_s=60)  # the lease is configurable
    plant_record(short, FOREIGN, 1, age_s=30)
    assert short.try_lock(KEY) is None
    plant_record(short, FOREIGN, 1, age_s=90)
    assert short.try_lock(KEY) is not None


def test_an_unreadable_record_holds_for_a_lease_by_its_mtime(tmp_path):
    store = RunStore(tmp_path, lease_s=60)
    store.locks_dir.mkdir(parents=True)
    record_of(store).write_bytes(b"\xff\xfe garbage")
    assert store.try_lock(KEY) is None
    old = time.time() - 120
    os.utime(record_of(store), (old, old))
    assert store.try_lock(KEY) is not None


def test_refresh_renews_the_lease_and_notices_a_takeover(tmp_path):
    store = RunStore(tmp_path)
    held = store.try_lock(KEY)
    info = json.loads(record_of(store).read_text())
    info["refreshed"] = 0.0
    record_of(store).write_text(json.dumps(info))
    held.refresh()
    assert json.loads(record_of(store).read_text())["refreshed"] > time.time() - 60 and not held.lost
    # Another host broke the lease and claimed the run: refreshing must not overwrite it,
    # and releasing must not delete it.
    plant_record(store, FOREIGN, 1, age_s=0)
    held.refresh()
    assert held.lost
    held.release()
    assert store.lock_holder(KEY)["host"] == FOREIGN


RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from gentest import locks
    locks_dir, work, keys = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
    (work / f"ready.{os.getpid()}").touch()
    while not (work / "go").exists():
        time.sleep(0.001)
    pending = keys
    while pending:
        later = []
        for key in pending:
            if (work / f"{key}.done").exists():
                continue
            held = locks.try_lock(locks_dir, key)
            if held is None:
                later.append(key)
                continue
            with held:
                if not (work / f"{key}.done").exists():
                    with open(work / "trained.log", "a") as log:
                        log.write(f"{key} {os.getpid()}\\n")
                    time.sleep(0.05)  # "training"
                    (work / f"{key}.done").write_text("")
        pending = later
        time.sleep(0.01)
""")


def test_processes_racing_for_the_same_runs_train_each_exactly_once(tmp_path):
    store = RunStore(tmp_path / "store")
    keys = [f"{i:016x}" for i in range(6)]
    procs = [
        subprocess.Popen([sys.executable, "-c", RACER, str(store.locks_dir), str(tmp_path), ",".join(keys)])
        for _ in range(3)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready.*"))) < 3:  # all three started: release them together
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a racer never started"
        time.sleep(0.01)
    (tmp_path / "go").write_text("")
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    trained = (tmp_path / "trained.log").read_text().split()[::2]
    assert sorted(trained) == keys  # each exactly once
    assert not list(store.locks_dir.glob("*.json")) and not list(store.locks_dir.glob("*.tmp"))


def staging(store: RunStore, host: str, pid: int | str, age_s: float = 0, name: str | None = None) -> Path:
    path = store.tmp_dir / (name or f"{KEY}.{host}.{pid}.abcd1234")
    path.mkdir(parents=True)
    (path / "weights.pt").write_bytes(b"half")
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_clean_debris_removes_only_what_no_live_process_will_finish(tmp_path):
    store = RunStore(tmp_path)
    dead_here = staging(store, this_host(), DEAD_PID)
    live_here = staging(store, this_host(), os.getpid())
    foreign_fresh = staging(store, FOREIGN, DEAD_PID, age_s=23 * 3600)  # may be alive over there
    foreign_old = staging(store, FOREIGN, os.getpid(), age_s=25 * 3600)
    odd_fresh = staging(store, "", "", name=f"{KEY}.12345.old-format")
    odd_old = staging(store, "", "", name="who-knows", age_s=25 * 3600)
    value_tmp = store.tmp_dir / f".norm@1.json.{this_host()}.{DEAD_PID}.abcd.tmp"
    value_tmp.write_text("{")
    store.locks_dir.mkdir()
    lock_tmp = store.locks_dir / f".{KEY}.lock.json.{this_host()}.{DEAD_PID}.abcd.tmp"
    lock_tmp.write_text("{")
    (store.locks_dir / f"{KEY}.lock").write_text("")  # the OS lock file itself stays

    assert store.clean_debris() == 5
    remaining = {p.name for p in store.tmp_dir.iterdir()} | {p.name for p in store.locks_dir.iterdir()}
    assert remaining == {live_here.name, foreign_fresh.name, odd_fresh.name, f"{KEY}.lock"}
    assert not any(p.exists() for p in (dead_here, foreign_old, odd_old, value_tmp, lock_tmp))
    assert RunStore(tmp_path, debris_age_s=3600).clean_debris() == 1  # a shorter age: the 23-hour-old foreign one goes
    assert not foreign_fresh.exists() and odd_fresh.exists()


def test_temp_names_carry_host_and_pid_even_with_dotted_host_names(monkeypatch):
    monkeypatch.setattr(locks.socket, "gethostname", lambda: "node7.cluster.example.org")
    name = locks.temp_name("norm.frobenius@1.json")
    assert locks.temp_owner(name) == ("node7_cluster_example_org", os.getpid())
    assert locks.temp_owner(f"{KEY}.12345.abcd") is None  # the old format says no host


def test_a_forked_child_neither_holds_nor_releases_its_parents_lock(tmp_path):
    store = RunStore(tmp_path)
    held = store.try_lock(KEY)
    pid = os.fork()
    if pid == 0:  # the child: it must not count as holder, and releasing must not unlock
        ok = not locks.held_here(store.locks_dir, KEY)
        held.release()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert locks.held_here(store.locks_dir, KEY) and store.lock_holder(KEY)["pid"] == os.getpid()
    assert store.try_lock(KEY) is None  # still ours
    held.release()
    assert store.try_lock(KEY) is not None


def test_a_trainer_keeps_its_lease_by_heartbeat_and_says_so_when_another_host_took_it_over(tmp_path, capsys):
    """A run that trains for longer than the lease keeps its claim (the heartbeat refreshes the
    record: another host would not see it stale); a takeover while it trains (this holder was
    cut off for a whole lease) is reported, the taker's record is left alone, and the run the
    trainer stored stays whole."""
    import torch

    from gentest.runner import DataCache, Progress, train_one
    from gentest.spec import RunSpec, TrainSettings, freeze

    lease = 1.0  # heartbeat every lease / 6
    store = RunStore(tmp_path / "store", lease_s=lease)
    spec = RunSpec(dataset="synthetic", dataset_args=freeze({"features": 8, "classes": 3, "train_size": 60, "test_size": 30}),
                   model="mlp", model_args=freeze({"hidden": [8]}),
                   train=TrainSettings(lr=0.1, batch_size=32, max_epochs=3, stop_train_acc=None))
    seen = {}

    class Checks(Progress):
        def epoch_done(self, epoch, row):
            holder = store.lock_holder(spec.key)
            if epoch == 1:  # hold the training until more than a lease has passed since the claim
                while time.time() - holder["acquired"] <= 1.5 * lease:
                    time.sleep(0.05)
                    holder = store.lock_holder(spec.key)
                seen["refreshed_by_heartbeat"] = holder["refreshed"] > holder["acquired"] + lease / 2
                seen["stale_to_another_host"] = locks.is_stale({**holder, "host": FOREIGN}, lease)
            elif epoch == 2:  # another host broke the lease and claimed the run
                plant_record(store, FOREIGN, 1, age_s=0, key=spec.key)

    run = train_one(spec, store, torch.device("cpu"), DataCache(), Checks())
    assert seen == {"refreshed_by_heartbeat": True, "stale_to_another_host": False}
    err = capsys.readouterr().err
    assert f"run {spec.label()} ({spec.key}): its lock's lease lapsed while it trained" in err
    assert store.lock_holder(spec.key)["host"] == FOREIGN  # the taker's record was not removed
    assert store.load(run.key, verify=True).metrics["epochs"] == 3
