"""Hostile measures (issue 10 points 1-4, issue 11 point 5): each one's misdeed becomes its own
recorded error, no other measure's value changes (compared with a clean evaluation), and
nothing wrong is cached.

Each case evaluates [hostile measure, probes...] on two natural runs of the tiny suite that
share one loaded dataset, in a private copy of the store; the probes read exactly what a
hostile measure could have spoiled: cached margins, the training data, the default dtype, grad
mode, the initial weights.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time

import pytest
import torch

from gentest.cli import main
from gentest.context import RunCache
from gentest.datasets import DataSplit
from gentest.evaluation import call_isolated, evaluate
from gentest.isolation import TorchState
from gentest.registry import measure
from gentest.runner import DataCache

from conftest import dedent
from tiny_mlp import B1, B2, W1, W2, mlp

CPU = torch.device("cpu")


def _probes():
    """Measures whose values a hostile measure before them could spoil."""

    @measure("probe.margin", family="t", orientation="higher-better")
    def margin(ctx):
        return ctx.margin("train")  # the shared cached logits and margins

    @measure("probe.data", family="t", orientation="higher-worse")
    def data(ctx):
        return ctx.x_train.double().sum().item() + ctx.y_train.double().sum().item()

    @measure("probe.dtype_bytes", family="t", orientation="higher-worse")
    def dtype_bytes(ctx):
        return float(torch.tensor(1.0).element_size())  # 4 under float32, 8 under float64

    @measure("probe.grad_norm", family="t", orientation="higher-worse")
    def grad_norm(ctx):
        loss = ctx.loss_fn(ctx.model(ctx.x_train), ctx.y_train)
        grads = torch.autograd.grad(loss, list(ctx.model.parameters()))
        return torch.cat([g.reshape(-1) for g in grads]).norm().item()

    @measure("probe.init_norm", family="t", orientation="higher-worse")
    def init_norm(ctx):
        return sum(w0.double().pow(2).sum() for _, w0 in ctx.weights(init=True)).item()

    return ["probe.margin", "probe.data", "probe.dtype_bytes", "probe.grad_norm", "probe.init_norm"]


def _private_store(store, runs, folder):
    copy = type(store)(folder)
    copy.runs_dir.mkdir(parents=True)
    for run in runs:
        shutil.copytree(run.path, copy.runs_dir / run.key)
    return copy, [copy.load(r.key) for r in runs]


def _evaluate(names, tiny_store, folder, registry):
    _, store, runs = tiny_store
    natural = [r for r in runs if r.spec.randomization == "none"]  # two runs, one shared dataset
    private, copies = _private_store(store, natural, folder)
    values = evaluate(copies, [registry[n] for n in names], private, CPU, DataCache())
    return {(v.run_key, v.measure): v for v in values}, private, copies


HOSTILE = {
    "logits": (lambda ctx: (ctx.logits("train").mul_(-1), 1.0)[1], "modified ctx.logits('train') in place"),
    "margins": (lambda ctx: (ctx.margins("train").zero_(), 1.0)[1], "modified ctx.margins('train') in place"),
    "dtype": (lambda ctx: torch.set_default_dtype(torch.float64) or 1.0, "changed torch's default dtype to float64"),
    "grad": (lambda ctx: (torch.set_grad_enabled(False), 1.0)[1],
             "changed torch's grad mode (torch.is_grad_enabled()) to False"),
    "anomaly": (lambda ctx: (torch.autograd.set_detect_anomaly(True), 1.0)[1],
                "changed torch's anomaly detection to True"),
    "deterministic": (lambda ctx: (torch.use_deterministic_algorithms(True), 1.0)[1],
                      "changed torch's deterministic-algorithms flag to True"),
    "threads": (lambda ctx: torch.set_num_threads(torch.get_num_threads() + 1) or 1.0,
                "changed torch's number of threads to {threads}"),
    "matmul_precision": (lambda ctx: torch.set_float32_matmul_precision("medium") or 1.0,
                         # torch ties the TF32 flag to the precision: both are named, both restored
                         "changed torch's float32 matmul precision to medium; "
                         "changed torch's cuda.matmul.allow_tf32 flag to True"),
    "exit3": (lambda ctx: sys.exit(3), "called sys.exit(3)"),
    "exit0": (lambda ctx: sys.exit(0), "called sys.exit(0)"),
    "keyboard": (lambda ctx: (_ for _ in ()).throw(KeyboardInterrupt()),
                 "raised KeyboardInterrupt itself (no Ctrl-C was pressed)"),
    "x_train": (lambda ctx: (ctx.x_train.mul_(0), 1.0)[1], "modified ctx.x_train in place"),
    "y_train": (lambda ctx: (ctx.y_train.fill_(0), 1.0)[1], "modified ctx.y_train in place"),
    "init": (lambda ctx: (ctx.layers()[0].initial.mul_(2), 1.0)[1],
             "modified the initial model's weights (measures must leave ctx.init_model unchanged)"),
    # In-place on the data, then a cached tensor computed from the spoiled data: both dropped.
    "x_then_logits": (lambda ctx: (ctx.x_train.add_(1), ctx.logits("train").sum().item())[1],
                      "modified ctx.x_train in place"),
}


@pytest.fixture(scope="module")
def clean_values(tiny_store, tmp_path_factory):
    from gentest import registry

    saved = dict(registry._MEASURES)
    try:
        names = _probes()
        by, _, copies = _evaluate(names, tiny_store, tmp_path_factory.mktemp("clean"), registry._MEASURES)
    finally:
        registry._MEASURES.clear()
        registry._MEASURES.update(saved)
    values = {(k, n): v.value for (k, n), v in by.items()}
    assert all(v is not None for v in values.values()), by
    assert {n for _, n in values} == set(names)
    return {(k, n): v for (k, n), v in values.items()}, [r.key for r in copies]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_measure_is_its_own_error_and_changes_no_other_value(case, clean_registry, tiny_store, tmp_path,
                                                                       clean_values):
    clean, keys = clean_values
    fn, expected = HOSTILE[case]
    expected = expected.format(threads=torch.get_num_threads() + 1)
    measure(f"hostile.{case}", family="t", orientation="higher-worse")(fn)
    probes = _probes()
    state = TorchState.read()

    by, store, runs = _evaluate([f"hostile.{case}"] + probes, tiny_store, tmp_path, clean_registry._MEASURES)

    assert TorchState.read() == state  # restored
    for key in keys:
        hostile = by[key, f"hostile.{case}"]
        assert (hostile.value, hostile.error, hostile.not_applicable) == (None, expected, False)
        for name in probes:  # bit for bit the values of a clean evaluation
            assert by[key, name].error is None and by[key, name].value == clean[key, name], name
        # What the store keeps is what was returned: the error, no value; the clean probes.
        stored = store.get_value(key, f"hostile.{case}", "1")
        assert (stored.value, stored.error) == (None, expected)
        assert all(store.get_value(key, n, "1").value == clean[key, n] for n in probes)


def test_a_broad_except_cannot_swallow_the_time_limit(clean_registry, tiny_store, tmp_path, clean_values):
    clean, keys = clean_values

    @measure("hostile.swallows_timeout", family="t", orientation="higher-worse", timeout_s=0.1)
    def swallows(ctx):
        try:
            time.sleep(2)
        except Exception:  # what issue 10 point 4 found: the old timeout was an Exception
            pass
        return 1.0

    @measure("hostile.swallows_everything", family="t", orientation="higher-worse", timeout_s=0.1)
    def stubborn(ctx):
        end = time.monotonic() + 0.5
        while time.monotonic() < end:  # catches every interruption and goes on to the end
            try:
                time.sleep(max(0.0, end - time.monotonic()))
            except BaseException:
                pass
        return 1.0

    names = ["hostile.swallows_timeout", "hostile.swallows_everything"]
    probes = _probes()
    by, store, _ = _evaluate(names + probes, tiny_store, tmp_path, clean_registry._MEASURES)
    for key in keys:
        for name in names:
            assert (by[key, name].value, by[key, name].error) == (None, "timed out after 0.1 s")
            assert store.get_value(key, name, "1").value is None
        assert all(by[key, n].value == clean[key, n] for n in probes)


def _in_memory_cache(weights=(W1, B1, W2, B2)) -> RunCache:
    gen = torch.Generator().manual_seed(0)
    data = DataSplit("toy", torch.randn(20, 3, generator=gen), torch.randint(0, 3, (20,), generator=gen),
                     torch.randn(10, 3, generator=gen), torch.randint(0, 3, (10,), generator=gen), num_classes=3)
    return RunCache(mlp(*weights), mlp(*weights), data)


def test_a_late_value_is_refused_even_where_no_alarm_can_interrupt(clean_registry):
    """In a thread other than the main one there is no SIGALRM; the deadline still holds."""

    @measure("hostile.late", family="t", orientation="higher-worse", timeout_s=0.05)
    def late(ctx):
        time.sleep(0.2)
        return 1.0

    @measure("fine.quick", family="t", orientation="higher-worse")
    def quick(ctx):
        return 2.0

    results = {}
    cache = _in_memory_cache()

    def work():
        results["late"] = call_isolated(clean_registry._MEASURES["hostile.late"], cache)
        results["quick"] = call_isolated(clean_registry._MEASURES["fine.quick"], cache)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert (results["late"].value, results["late"].error) == (None, "timed out after 0.05 s")
    assert (results["quick"].value, results["quick"].error) == (2.0, None)


def test_a_keyboard_interrupt_raised_in_a_thread_is_the_measures_error(clean_registry):
    """Python delivers SIGINT to the main thread only: any other thread's KeyboardInterrupt is
    the measure's own (a worker that runs measures in a thread keeps the same rule)."""

    @measure("hostile.kbd", family="t", orientation="higher-worse")
    def kbd(ctx):
        raise KeyboardInterrupt

    results = []
    thread = threading.Thread(target=lambda: results.append(call_isolated(clean_registry._MEASURES["hostile.kbd"],
                                                                          _in_memory_cache())))
    thread.start()
    thread.join()
    assert results[0].error == "raised KeyboardInterrupt itself (no Ctrl-C was pressed)"


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_the_users_ctrl_c_still_stops_evaluation_even_if_the_measure_catches_it(clean_registry, tiny_store, tmp_path):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("the test runner handles SIGINT itself")

    @measure("victim.catches_ctrl_c", family="t", orientation="higher-worse")
    def catches(ctx):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        return 1.0

    _, store, runs = tiny_store
    private, copies = _private_store(store, runs[:1], tmp_path)
    with pytest.raises(KeyboardInterrupt):
        evaluate(copies, [clean_registry._MEASURES["victim.catches_ctrl_c"]], private, CPU)
    assert private.get_value(copies[0].key, "victim.catches_ctrl_c", "1") is None  # nothing recorded
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_model_trained_to_nan_weights_is_not_a_mutation(clean_registry):
    """Issue 10 point 6: NaN != NaN made every measure 'modify the model's weights'."""
    nan = float("nan")
    cache = _in_memory_cache(([[nan] * 3] + W1[1:], B1, W2, B2))

    @measure("fine.reads", family="t", orientation="higher-worse")
    def reads(ctx):
        return float(ctx.layers()[1].weight.sum())

    result = call_isolated(clean_registry._MEASURES["fine.reads"], cache)
    assert (result.value, result.error) == (float(sum(map(sum, W2))), None)


def test_global_random_draws_are_reproducible_and_leave_the_callers_generators_alone(clean_registry):
    import random

    import numpy as np

    @measure("sloppy.global_rng", family="t", orientation="higher-worse")
    def sloppy(ctx):  # torch's, NumPy's and Python's global generators, each reseeded for the call
        return torch.rand(()).item() + 10 * np.random.rand() + 100 * random.random()

    cache = _in_memory_cache()

    def seed_all():
        torch.manual_seed(1234)
        np.random.seed(1234)
        random.seed(1234)

    seed_all()
    expected_next = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    seed_all()
    first = call_isolated(clean_registry._MEASURES["sloppy.global_rng"], cache)
    # The caller's three streams did not move.
    assert torch.equal(torch.rand(3), expected_next[0])
    assert np.array_equal(np.random.rand(3), expected_next[1])
    assert [random.random() for _ in range(3)] == expected_next[2]
    second = call_isolated(clean_registry._MEASURES["sloppy.global_rng"], cache)
    assert first.value == second.value and first.error is None
    other_seed = call_isolated(clean_registry._MEASURES["sloppy.global_rng"], cache, rng_seed=7)
    assert other_seed.value != first.value


def test_the_shared_cache_is_rebuilt_after_an_in_place_change(clean_registry):
    cache = _in_memory_cache()
    clean_logits = cache.logits("train").clone()
    x_train = cache.x_train.clone()

    @measure("hostile.both", family="t", orientation="higher-worse")
    def both(ctx):
        ctx.x_train.mul_(-1)
        ctx.logits("test").add_(3)
        return 1.0

    result = call_isolated(clean_registry._MEASURES["hostile.both"], cache)
    assert result.error == "modified ctx.x_train in place; modified ctx.logits('test') in place"
    assert "logits/train" not in cache._tensors  # dropped: it could have been computed from spoiled data
    assert torch.equal(cache.logits("train"), clean_logits)
    assert torch.equal(cache.x_train, x_train)
    assert cache.modified() == []


def test_the_caches_data_is_its_own_copy():
    """Writing into a cache's data cannot reach the dataset other runs are built from."""
    data = DataSplit("toy", torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2, 3),
                     torch.zeros(2, dtype=torch.long), num_classes=3)
    cache = RunCache(mlp(W1, B1, W2, B2), mlp(W1, B1, W2, B2), data)
    cache.x_train.add_(1)
    assert data.x_train.sum().item() == 0


# ---- gentest check and plug-in import (issue 10 point 3) --------------------------------------

EXITS = """
import sys
from gentest import measure

@measure("exits.zero", family="test", orientation="higher-worse")
def exits_zero(ctx):
    sys.exit(0)

@measure("exits.dtype", family="test", orientation="higher-worse")
def dtype(ctx):
    import torch
    torch.set_default_dtype(torch.float64)
    return 1.0
"""


def _check(capsys, tiny_store, tmp_path, ref, plugin_text=EXITS):
    suite, store, _ = tiny_store
    plugin = tmp_path / "exits.py"
    plugin.write_text(plugin_text)
    code = main(["check", ref.replace("PLUGIN", str(plugin)), "--suite", str(suite.path), "--store", str(store.root),
                 "--device", "cpu"])
    return code, *capsys.readouterr()


def test_check_of_a_measure_that_calls_sys_exit_0_fails_naming_the_rule(capsys, clean_registry, tiny_store, tmp_path):
    code, out, err = _check(capsys, tiny_store, tmp_path, "PLUGIN:exits_zero")
    assert code == 1
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 4
    assert all("exited: called sys.exit(0) (a measure must return its value, not end the process)" in f for f in fails)


def test_check_of_a_measure_that_changes_the_default_dtype_fails(capsys, clean_registry, tiny_store, tmp_path):
    code, out, err = _check(capsys, tiny_store, tmp_path, "PLUGIN:dtype")
    assert code == 1
    assert "changed torch's default dtype to float64" in out
    assert torch.get_default_dtype() == torch.float32


def test_a_plugin_that_calls_sys_exit_at_import_is_one_sentence_and_exit_2(capsys, clean_registry, tmp_path):
    plugin = tmp_path / "bye.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    code = main(["measures", "--plugin", str(plugin)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == f"gentest: error: could not import measures from plugin {plugin}: it called sys.exit(0) while being imported\n"


def test_a_measure_name_defined_twice_in_one_file_names_both_lines(capsys, clean_registry, tmp_path):
    plugin = tmp_path / "twice.py"
    plugin.write_text(dedent("""
        from gentest import measure

        @measure("same", family="t", orientation="higher-worse")
        def first(ctx):
            return 1.0

        @measure("same", family="t", orientation="higher-worse")
        def second(ctx):
            return 2.0
    """))
    code = main(["measures", "--plugin", str(plugin)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err == (f"gentest: error: measure 'same' is defined twice in plugin {plugin}: "
                   "at line 3 (first) and at line 7 (second)\n")


def test_the_same_function_name_defined_twice_is_also_caught(capsys, clean_registry, tmp_path):
    plugin = tmp_path / "copy_paste.py"
    plugin.write_text(dedent("""
        from gentest import measure

        @measure("same", family="t", orientation="higher-worse")
        def f(ctx):
            return 1.0

        @measure("same", family="t", orientation="higher-worse")
        def f(ctx):
            return 2.0
    """))
    assert main(["measures", "--plugin", str(plugin)]) == 2
    assert "at line 3 (f) and at line 7 (f)" in capsys.readouterr().err


def test_a_folder_given_as_plugin_says_it_is_a_folder(capsys, clean_registry, tmp_path):
    assert main(["measures", "--plugin", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"gentest: error: plugin {tmp_path} is a folder; give a Python file that defines measures "
        "(--plugin path/to/file.py)\n"
    )
