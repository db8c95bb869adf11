"""`gentest evaluate` on a tiny suite of closed-form learners: trained, stored, reloaded, measured.

Checks that the store keeps a kernel machine's state and a Theorem 1 network like weights, that
ctx.kernel() / ctx.linear_solution() come back from a stored run, and that measures needing an
nn.Module say n/a on a kernel run instead of crashing.
"""

from __future__ import annotations

import json

import pytest

from gentest.cli import main

SUITE = """
[suite]
name = "tiny-learners"
measures = ["control.gap", "control.param_count", "kernel.rkhs_norm", "linear.minnorm_l2",
            "norm.param_l2", "margin.output_margin"]

[base]
dataset = { name = "synthetic", features = 6, classes = 3, train_size = 60, test_size = 150 }

[axes]
learner = [
  { name = "kernel-interpolation", bandwidth = "median" },
  { name = "linear-minnorm", features = { name = "random-fourier", n_features = 100 } },
  { name = "linear-sgd", features = { name = "random-fourier", n_features = 100 }, epochs = 20 },
  "theorem1",
]
randomization = ["none", "labels"]
"""


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learners")
    (folder / "s.toml").write_text(SUITE)
    out = folder / "report"
    code = main(["evaluate", str(folder / "s.toml"), "--store", str(folder / "store"), "--out", str(out), "--device", "cpu"])
    return code, folder, out


def values(folder) -> dict[tuple[str, str], object]:
    """(model|randomization, measure) -> the stored MeasureValue."""
    from gentest.registry import all_measures
    from gentest.store import RunStore

    store, measures = RunStore(folder / "store"), all_measures()
    return {
        (f"{run.spec.model}|{run.spec.randomization}", name): store.get_value(run.key, name, measures[name].version)
        for run in store.runs() for name in measures if store.get_value(run.key, name, measures[name].version)
    }


def test_learner_suite_evaluates_end_to_end(evaluated):
    code, folder, out = evaluated
    assert code == 0
    board = json.loads((out / "leaderboard.json").read_text())
    runs = {(r["model"], r["randomization"]): r for r in board["runs"]}
    assert set(runs) == {(m, r) for m in ("kernel-interpolation/pixels", "linear-minnorm/random-fourier",
                                          "linear-sgd/random-fourier", "theorem1") for r in ("none", "labels")}
    for (model, _), run in runs.items():
        if model != "linear-sgd/random-fourier":
            assert run["train_acc"] == 1.0  # every closed-form learner interpolates, random labels too
    # No controls_ok check: on 40 test points the Theorem 1 twins can tie on test accuracy.


def test_measures_apply_where_they_should(evaluated):
    _, folder, _ = evaluated
    v = values(folder)
    kernel_nat, kernel_rnd = (v[("kernel-interpolation/pixels|" + r, "kernel.rkhs_norm")] for r in ("none", "labels"))
    assert kernel_rnd.value > kernel_nat.value > 0  # random labels need more norm
    for measure in ("norm.param_l2", "margin.output_margin", "control.param_count", "linear.minnorm_l2"):
        value = v[("kernel-interpolation/pixels|none", measure)]
        assert value.value is None and value.not_applicable, value
    assert "no nn.Module" in v[("kernel-interpolation/pixels|none", "margin.output_margin")].error
    assert v[("theorem1|none", "kernel.rkhs_norm")].not_applicable
    for model in ("theorem1", "linear-minnorm/random-fourier"):  # existing norm measures run on these networks
        assert v[(model + "|labels", "norm.param_l2")].value > 0
        assert v[(model + "|labels", "margin.output_margin")].value is not None
    # linear.minnorm_l2 is the min-norm solution's norm; SGD from zero approaches it from below.
    mn = v[("linear-minnorm/random-fourier|none", "linear.minnorm_l2")].value
    sgd = v[("linear-sgd/random-fourier|none", "linear.minnorm_l2")].value
    assert 0 < sgd <= mn * (1 + 1e-6)


def test_a_kernel_too_large_for_the_budget_is_exit_2(tmp_path, capsys):
    suite = tmp_path / "big.toml"
    suite.write_text(
        '[base]\ndataset = { name = "synthetic", train_size = 500 }\n'
        'learner = { name = "kernel-interpolation", kernel_memory_gb = 0.001 }\n'
    )
    code = main(["train", str(suite), "--store", str(tmp_path / "store"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "kernel_memory_gb = 0.001" in err and "Traceback" not in err


def test_unknown_learner_is_exit_2_before_training(tmp_path, capsys):
    suite = tmp_path / "bad.toml"
    suite.write_text('[base]\ndataset = "synthetic"\nlearner = { name = "kernel-interpolation", bandwidth = 0 }\n')
    code = main(["train", str(suite), "--store", str(tmp_path / "store"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "bandwidth" in err and not (tmp_path / "store").exists()
