"""The measure-package template works as a third party would use it: installed, its measure
is listed by `gentest measures`, passes `gentest check`, and its own tests pass with
gentest's pytest plugin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent / "examples" / "measure-package"
NAME = "example.relative_distance_from_init"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The template, copied (a build must not write into the source tree) and installed into
    a folder of its own that subprocesses get on PYTHONPATH."""
    copy = tmp_path_factory.mktemp("template") / "measure-package"
    shutil.copytree(TEMPLATE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    try:  # build with the environment's setuptools when it has one: no download needed
        import setuptools  # noqa: F401

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "--target", str(target), str(copy)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    return env, tmp_path_factory.mktemp("store"), copy


def test_gentest_measures_lists_the_installed_measure(installed):
    env, _, _ = installed
    out = subprocess.run([sys.executable, "-m", "gentest", "measures", "--json"], env=env,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows[NAME]["source"] == "entry point gentest_example_measure.measures (gentest-example-measure)"
    assert rows[NAME]["family"] == "norm" and rows[NAME]["orientation"] == "higher-worse"


def test_gentest_check_passes_it(installed):
    env, store, _ = installed
    done = subprocess.run([sys.executable, "-m", "gentest", "check", NAME, "--expect", "separates", "--store", str(store),
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PASS {NAME}" in done.stdout


def test_the_templates_own_tests_pass_with_the_plugin(installed):
    env, store, template = installed
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--gentest-cache", str(store)],
                          cwd=template, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
