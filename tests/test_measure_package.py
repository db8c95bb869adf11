"""The measure-package template works as a third party would use it: installed into a clean
virtual environment against the local wheel of gentest-harness, its measure is listed by
`gentest measures`, passes `gentest check`, and its own tests pass with gentest's pytest plugin.

The clean environment gets gentest-harness only from a wheel built here (``pip --no-index
--find-links``, no configuration, no index), so the template's dependency on the distribution
name is checked for real. Its heavy dependencies (torch, scipy, ...) are taken from this test
environment through a folder of links that leaves out gentest's own distributions: installing
torch afresh would take minutes and a download, and proves nothing about gentest.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

import gentest

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "examples" / "measure-package"
NAME = "example.relative_distance_from_init"
DISTRIBUTION = "gentest-harness"
# Never linked into the clean environment: it must get these from the wheel or not at all.
OWN_DISTRIBUTIONS = {"gentest", "gentest-harness", "gentest-example-measure"}
IGNORE = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".gentest", ".pytest_cache")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(python: Path | str, *args: str, env: dict[str, str]) -> None:
    done = subprocess.run([str(python), "-m", "pip", *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user's shell with ``venv`` activated: no PYTHONPATH, and pip with
    no configuration (so no index and no extra wheel folder but the ones named)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "GENTEST_"))}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PATH": os.pathsep.join([str(venv / "bin"), env.get("PATH", "")]),
            "VIRTUAL_ENV": str(venv)}
    return env


def _setuptools_builds_here() -> bool:
    """Whether this environment's setuptools can build gentest-harness without a download."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 68
    except importlib.metadata.PackageNotFoundError:
        return False


def build_wheel(folder: Path) -> Path:
    """gentest-harness's wheel, built from a copy of its sources (a build writes build/ and
    *.egg-info beside them, and the source tree must stay clean)."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("gentest", "measures", "suites"):
        shutil.copytree(REPO / name, source / name, ignore=IGNORE)
    wheels = folder / "wheels"
    isolation = ["--no-build-isolation"] if _setuptools_builds_here() else []
    _pip(sys.executable, "wheel", "--quiet", "--no-deps", *isolation, "--wheel-dir", str(wheels), str(source),
         env={**os.environ})
    return next(wheels.glob("gentest_harness-*.whl"))


def dependencies_overlay(folder: Path) -> Path:
    """Links to everything installed in this environment except gentest's own distributions
    (their packages, metadata and editable-install hooks) and .pth files."""
    own = set()
    for dist in importlib.metadata.distributions():
        if _normalize(dist.metadata["Name"] or "") in OWN_DISTRIBUTIONS:
            own |= {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}
    overlay = folder / "dependencies"
    overlay.mkdir()
    for site in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
        for entry in Path(site).iterdir():
            skip = (entry.name in own or entry.name.startswith("__editable__") or entry.suffix == ".pth"
                    or entry.name == "__pycache__" or (overlay / entry.name).exists())
            if not skip:
                (overlay / entry.name).symlink_to(entry)
    return overlay


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A clean virtual environment with the template installed from a copy of it, gentest-harness
    from the local wheel; returns (environment variables, venv, store, template copy, work dir)."""
    root = tmp_path_factory.mktemp("clean")
    wheel = build_wheel(root)
    venv = root / "venv"
    # No pip or setuptools of its own: both come through the links, in this environment's versions
    # (a venv's bundled setuptools may be too old to build a wheel without the `wheel` package).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                   timeout=300)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "heavy-dependencies-of-the-test.pth").write_text(f"{dependencies_overlay(root)}\n")
    template = root / "measure-package"
    shutil.copytree(TEMPLATE, template, ignore=IGNORE)
    env = _clean_env(venv)
    # --no-build-isolation: build the template with the venv's setuptools, not a downloaded one.
    _pip(venv / "bin" / "python", "install", "--quiet", "--no-index", "--find-links", str(wheel.parent),
         "--no-build-isolation", f"{template}[test]", env=env)
    work = root / "work"  # not the repository: `python -m` there would import its gentest/ folder
    work.mkdir()
    return env, venv, root / "store", template, work


def test_pyproject_names_the_distribution_and_its_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    assert project["version"] == gentest.__version__
    assert project["scripts"] == {"gentest": "gentest.cli:main"}
    template = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    assert [d for d in template["dependencies"] if _normalize(re.split(r"[ <>=!~\[;]", d)[0]).startswith("gentest")] \
        == [DISTRIBUTION]


def test_gentest_harness_comes_from_the_local_wheel(installed):
    env, venv, _, _, work = installed
    probe = (
        "import importlib.metadata as m, json, gentest\n"
        "d = m.distribution('gentest-harness')\n"
        "try:\n    m.distribution('gentest'); other = True\nexcept m.PackageNotFoundError:\n    other = False\n"
        "print(json.dumps({'version': d.version, 'at': str(d.locate_file('')), 'module': gentest.__file__,"
        " 'module_version': gentest.__version__, 'unrelated_gentest': other}))"
    )
    facts = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=work, env=env,
                                      capture_output=True, text=True, check=True, timeout=120).stdout)
    assert facts["version"] == facts["module_version"] == gentest.__version__
    assert Path(facts["module"]).resolve().is_relative_to(venv.resolve())  # the wheel's copy, not the checkout
    assert Path(facts["at"]).resolve().is_relative_to(venv.resolve())
    assert not facts["unrelated_gentest"]
    version = subprocess.run([str(venv / "bin" / "gentest"), "--version"], cwd=work, env=env,
                             capture_output=True, text=True, check=True, timeout=120).stdout
    assert version.strip() == f"gentest {gentest.__version__}"


def test_gentest_measures_lists_the_installed_measure(installed):
    env, venv, _, _, work = installed
    out = subprocess.run([str(venv / "bin" / "gentest"), "measures", "--json"], cwd=work, env=env,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows[NAME]["source"] == "entry point gentest_example_measure.measures (gentest-example-measure)"
    assert rows[NAME]["family"] == "norm" and rows[NAME]["orientation"] == "higher-worse"
    assert "control.gap" in rows  # the built-ins came with the wheel


def test_gentest_check_passes_it(installed):
    env, venv, store, _, work = installed
    done = subprocess.run([str(venv / "bin" / "gentest"), "check", NAME, "--expect", "separates", "--store", str(store),
                           "--device", "cpu"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PASS {NAME}" in done.stdout


def test_the_templates_own_tests_pass_with_the_plugin_on_the_same_store(installed):
    """$GENTEST_STORE names the store for `gentest check` and the plugin alike: the runs the check
    trained are reused, not trained again."""
    env, venv, store, template, _ = installed
    before = {p: p.stat().st_mtime_ns for p in store.glob("runs/*/run.json")}
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider"],
                          cwd=template, env={**env, "GENTEST_STORE": str(store)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert f"gentest: store {store}" in done.stdout
    if before:  # the check ran first (the usual order): the plugin trained nothing new
        assert {p: p.stat().st_mtime_ns for p in store.glob("runs/*/run.json")} == before
