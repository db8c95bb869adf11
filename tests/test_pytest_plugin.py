"""The pytest plugin shares the gentest command's run store, and a failed assertion on a
verdict says why the verdict is what it is."""

from __future__ import annotations

import os
import subprocess
import sys

from gentest.pytest_plugin import Verdict, pytest_assertrepr_compare

from conftest import write_suite

USER_TEST = """
from gentest import measure

@measure("user.distance", family="test", orientation="higher-worse", requires={"init"})
def distance(ctx):
    return sum((w - w0).pow(2).sum() for w, w0 in ctx.weights(init=True)).sqrt().item()

def test_param_count_separates(gentest_score):
    assert gentest_score("control.param_count").verdict == "separates"

def test_distance_separates(gentest_score):
    assert gentest_score(distance).agrees_with("separates")
"""


def pytest_run(folder, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "GENTEST_STORE"} | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(folder), *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_the_default_store_is_gentest_checks(tmp_path):
    """.gentest in the rootdir, $GENTEST_STORE, then --gentest-cache: read from pytest's header."""
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = pytest_run(tmp_path, "--co")
    assert f"gentest: store {tmp_path / '.gentest'} (suite ci)" in done.stdout, done.stdout + done.stderr
    done = pytest_run(tmp_path, "--co", env_extra={"GENTEST_STORE": str(tmp_path / "shared")})
    assert f"gentest: store {tmp_path / 'shared'} (suite ci)" in done.stdout
    done = pytest_run(tmp_path, "--co", "--gentest-cache", str(tmp_path / "own"),
                      env_extra={"GENTEST_STORE": str(tmp_path / "shared")})
    assert f"gentest: store {tmp_path / 'own'} (suite ci)" in done.stdout


def test_the_ini_option_gentest_cache_names_the_store_between_the_command_line_and_the_environment(tmp_path):
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    (tmp_path / "pytest.ini").write_text(f"[pytest]\ngentest_cache = {tmp_path / 'from-ini'}\n")
    done = pytest_run(tmp_path, "--co", env_extra={"GENTEST_STORE": str(tmp_path / "shared")})
    assert f"gentest: store {tmp_path / 'from-ini'} (suite ci)" in done.stdout, done.stdout + done.stderr
    done = pytest_run(tmp_path, "--co", "--gentest-cache", str(tmp_path / "own"))
    assert f"gentest: store {tmp_path / 'own'} (suite ci)" in done.stdout


def test_a_failed_verdict_assertion_shows_the_reason_and_the_runs_are_shared(tmp_path):
    suite = write_suite(tmp_path)
    (tmp_path / "test_user.py").write_text(USER_TEST)
    done = pytest_run(tmp_path, "-q", "--gentest-suite", str(suite))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    # Two pairs give no verdict ("inconclusive"), and control.param_count ties every pair; the
    # reason is shown.
    assert "assert 'inconclusive' == 'separates'" in done.stdout
    assert "gentest verdict 'inconclusive': sign-error 0.50 over 2 pairs: control.param_count ties every pair" in done.stdout
    # Trained into the default store, and the store knows the suite: `gentest report` finds it.
    from gentest.cli import main

    assert len(list((tmp_path / ".gentest" / "runs").iterdir())) == 4
    assert main(["report", "--store", str(tmp_path / ".gentest"), "--out", str(tmp_path / "report")]) == 0


def test_a_verdict_is_its_string_and_carries_its_reason():
    v = Verdict("chance", "sign-error 0.50 over 2 pairs")
    assert v == "chance" and str(v) == "chance" and f"{v}" == "chance" and v != "separates"
    assert repr(v) == "'chance' (sign-error 0.50 over 2 pairs)"
    assert pytest_assertrepr_compare(None, "==", v, "separates") == [
        "'chance' == 'separates'", "gentest verdict 'chance': sign-error 0.50 over 2 pairs"]
    assert pytest_assertrepr_compare(None, "==", "chance", "separates") is None  # not ours: pytest's own diff
