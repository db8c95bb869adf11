"""Processes sharing one store (issue 8, section 3): racing trainers train each run exactly once
and leave no debris; concurrent writers of one value never expose a partial file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from gentest.store import RunStore
from gentest.suites import load_suite

from processes import assert_racers_overlapped_and_each_trained, racer_env
from test_store import SPEC, save


def test_two_train_processes_racing_on_one_empty_store_train_each_run_once(tmp_path):
    store, race = tmp_path / "store", tmp_path / "race"
    race.mkdir()
    cmd = [sys.executable, "-m", "gentest", "train", "ci", "--store", str(store), "--device", "cpu"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**racer_env(race, f"racer{i}", 2), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
             for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]

    # Both were training at once (a start line holds each until the other is in), so the
    # locks, not the turns the two happened to take, kept each run to one trainer.
    by_racer = assert_racers_overlapped_and_each_trained(race, ["racer0", "racer1"])
    keys = sorted(s.key for s in load_suite("ci").specs)
    assert sorted(by_racer["racer0"] + by_racer["racer1"]) == keys  # each run trained exactly once
    labels = sorted(s.label() for s in load_suite("ci").specs)
    trained = [sorted(line.split(": trained")[0] for line in err.splitlines() if ": trained" in line)
               for _, err in outputs]
    assert all(trained) and sorted(trained[0] + trained[1]) == labels  # and each says what it trained
    for out, _ in outputs:  # and both report the whole suite
        assert out.count("mnist1d") >= len(labels)

    runs = RunStore(store)
    assert sorted(runs.keys()) == sorted(s.key for s in load_suite("ci").specs)
    assert all(runs.load(k, verify=True).weights()["final"] for k in runs.keys())
    assert list((store / "tmp").iterdir()) == []  # no debris
    assert not [p for p in (store / "locks").iterdir() if not p.name.endswith(".lock")]  # no holder records
    assert not (store / "quarantine").exists()


WRITER = textwrap.dedent("""
    import os, sys, time
    from gentest.store import RunStore
    from gentest.values import MeasureValue
    store, key, tag, stop = RunStore(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
    print("ready", flush=True)
    sys.stdin.readline()
    first, n = time.time(), 0
    while not os.path.exists(stop):  # write until the reader has seen enough
        store.put_value(MeasureValue(key, "race.m", "1", tag, None, 0.0, extra={"pad": "x" * 1_000_000, "i": n}))
        n += 1
    print(n, first, time.time(), flush=True)
""")


def test_concurrent_writers_of_one_value_never_expose_a_partial_file(tmp_path):
    seen = []
    store = RunStore(tmp_path, on_damage=seen.append)
    save(store)
    stop = tmp_path / "stop"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), SPEC.key, str(tag), str(stop)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for tag in (1.0, 2.0)
    ]
    for w in writers:
        assert w.stdout.readline().strip() == "ready"
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    # Read while both write: stop them only once each one's value has been read back several
    # times, so the reads provably interleave with both writers' replacements.
    reads: list[float] = []
    deadline = time.monotonic() + 120  # a hang guard; the assertions below say what went wrong
    while (min(reads.count(1.0), reads.count(2.0)) < 5 and all(w.poll() is None for w in writers)
           and time.monotonic() < deadline):
        value = store.get_value(SPEC.key, "race.m", "1")
        if value is not None:
            reads.append(value.value)
    stop.write_text("")
    assert [w.wait() for w in writers] == [0, 0]
    assert seen == []  # never a torn or half-written file
    assert set(reads) == {1.0, 2.0} and min(reads.count(1.0), reads.count(2.0)) >= 5
    spans = [tuple(map(float, w.stdout.read().split())) for w in writers]  # (writes, first, last)
    assert all(n >= 1 for n, _, _ in spans)  # each did work
    assert max(first for _, first, _ in spans) < min(last for _, _, last in spans)  # and they overlapped
    assert store.get_value(SPEC.key, "race.m", "1").value in (1.0, 2.0)
    assert list(store.tmp_dir.iterdir()) == []
    assert [p.name for p in (store.runs_dir / SPEC.key / "measures").iterdir()] == ["race.m@1.json"]
