"""gentest check: a measure's contract on every run, then its verdict; and the pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gentest.cli import main

from conftest import write_suite

BROKEN = """
import torch
from gentest import measure

@measure("broken.nan", family="test", orientation="higher-worse")
def nan(ctx):
    return float("nan")

@measure("broken.raises", family="test", orientation="higher-worse")
def raises(ctx):
    raise ZeroDivisionError("margin of zero")

@measure("broken.random", family="test", orientation="higher-worse")
def nondeterministic(ctx):
    return torch.rand(1).item()  # the global generator: a different value each call

@measure("broken.mutates", family="test", orientation="higher-worse")
def mutates(ctx):
    with torch.no_grad():
        next(ctx.model.parameters()).mul_(0.5)
    return 1.0

@measure("fine.distance", family="test", orientation="higher-worse", requires={"init"})
def distance(ctx):
    return sum((w - w0).pow(2).sum() for w, w0 in ctx.weights(init=True)).sqrt().item()
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("check")
    suite = write_suite(folder)
    plugin = folder / "broken.py"
    plugin.write_text(BROKEN)
    return folder, suite, plugin


def check(capsys, setup, measure, *extra):
    folder, suite, plugin = setup
    code = main(["check", measure, "--suite", str(suite), "--plugin", str(plugin), "--store", str(folder / "store"),
                 "--device", "cpu", *extra])
    out, err = capsys.readouterr()
    return code, out


def test_gap_passes_and_param_count_fails_saying_it_ties(capsys, setup):
    # Two pairs are too few for any verdict: the check asks that the sample agree with the expectation.
    code, out = check(capsys, setup, "control.gap", "--expect", "separates")
    assert code == 0 and "PASS control.gap" in out and "verdict inconclusive" in out
    assert "agreed with: too few pairs here for a verdict" in " ".join(out.split())
    code, out = check(capsys, setup, "control.param_count", "--expect", "separates")
    assert code == 1
    assert ("FAIL expected 'separates' but the verdict is 'inconclusive': control.param_count ties every pair (2 of 2)"
            in out)
    code, out = check(capsys, setup, "control.param_count", "--expect", "chance")
    assert code == 0
    code, out = check(capsys, setup, "control.gap", "--expect", "inverts")
    assert code == 1


@pytest.mark.parametrize("measure,rule", [
    ("broken.nan", "not a finite float: returned nan"),
    ("broken.raises", "raised ZeroDivisionError: margin of zero"),
    ("broken.random", "not deterministic:"),
    ("broken.mutates", "changed the model's weights"),
])
def test_each_broken_rule_fails_the_check_and_is_named(capsys, setup, measure, rule):
    code, out = check(capsys, setup, measure)
    assert code == 1
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 4 and all(rule in line for line in fails)  # one per run, each naming the rule


def test_path_function_reference_and_bad_input(capsys, setup):
    folder, suite, plugin = setup
    code, out = check(capsys, setup, f"{plugin}:distance")
    assert code == 0 and "PASS fine.distance" in out
    code = main(["check", f"{plugin}:missing", "--suite", str(suite), "--store", str(folder / "store")])
    _, err = capsys.readouterr()
    assert code == 2 and "defines no function 'missing' decorated with @measure" in err
    code = main(["check", "control.gapp", "--suite", str(suite), "--store", str(folder / "store")])
    _, err = capsys.readouterr()
    assert code == 2 and "did you mean control.gap" in err


def test_pytest_plugin_scores_a_measure_in_a_users_test_suite(setup, tmp_path):
    folder, suite, plugin = setup
    (tmp_path / "test_user.py").write_text(
        "import torch\n"
        "from gentest import measure\n\n"
        "@measure('user.distance', family='test', orientation='higher-worse', requires={'init'})\n"
        "def distance(ctx):\n"
        "    return sum((w - w0).pow(2).sum() for w, w0 in ctx.weights(init=True)).sqrt().item()\n\n"
        "@measure('user.random', family='test', orientation='higher-worse')\n"
        "def random(ctx):\n"
        "    return torch.rand(1).item()\n\n"
        "def test_separates(gentest_score):\n"
        "    assert gentest_score(distance).agrees_with('separates')\n\n"
        "def test_by_name_and_controls(gentest_score):\n"
        "    result = gentest_score('control.param_count')\n"
        "    assert result.agrees_with('chance') and not result.agrees_with('separates')\n\n"
        "def test_broken_contract_is_an_error(gentest_score):\n"
        "    result = gentest_score(random)\n"
        "    assert result.verdict == 'error' and 'not deterministic' in result.failures[0]\n"
    )
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_user.py"),
           "--gentest-suite", str(suite), "--gentest-cache", str(cache), "--rootdir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert len(list((cache / "runs").iterdir())) == 4  # the runs are cached for the next build
