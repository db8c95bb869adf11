"""Processes sharing one store (issue 8, section 3): racing trainers train each run exactly once
and leave no debris; concurrent writers of one value never expose a partial file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from gentest.store import RunStore
from gentest.suites import load_suite

from test_store import SPEC, save


def test_two_train_processes_racing_on_one_empty_store_train_each_run_once(tmp_path):
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "gentest", "train", "ci", "--store", str(store), "--device", "cpu"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]

    labels = sorted(s.label() for s in load_suite("ci").specs)
    trained = sorted(line.split(": trained")[0] for _, err in outputs
                     for line in err.splitlines() if ": trained" in line)
    assert trained == labels  # each run trained exactly once, by one of the two
    for out, _ in outputs:  # and both report the whole suite
        assert out.count("mnist1d") >= len(labels)

    runs = RunStore(store)
    assert sorted(runs.keys()) == sorted(s.key for s in load_suite("ci").specs)
    assert all(runs.load(k, verify=True).weights()["final"] for k in runs.keys())
    assert list((store / "tmp").iterdir()) == []  # no debris
    assert not [p for p in (store / "locks").iterdir() if not p.name.endswith(".lock")]  # no holder records
    assert not (store / "quarantine").exists()


WRITER = textwrap.dedent("""
    import sys
    from gentest.store import RunStore
    from gentest.values import MeasureValue
    store, key, n, tag = RunStore(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(n):
        store.put_value(MeasureValue(key, "race.m", "1", tag, None, 0.0, extra={"pad": "x" * 1_000_000, "i": i}))
""")


def test_concurrent_writers_of_one_value_never_expose_a_partial_file(tmp_path):
    seen = []
    store = RunStore(tmp_path, on_damage=seen.append)
    save(store)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), SPEC.key, "25", str(tag)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for tag in (1.0, 2.0)
    ]
    for w in writers:
        assert w.stdout.readline().strip() == "ready"
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    reads = set()
    while any(w.poll() is None for w in writers):
        value = store.get_value(SPEC.key, "race.m", "1")
        if value is not None:
            reads.add(value.value)
    assert [w.wait() for w in writers] == [0, 0]
    assert seen == []  # never a torn or half-written file
    assert reads <= {1.0, 2.0} and store.get_value(SPEC.key, "race.m", "1").value in (1.0, 2.0)
    assert list(store.tmp_dir.iterdir()) == []
    assert [p.name for p in (store.runs_dir / SPEC.key / "measures").iterdir()] == ["race.m@1.json"]
