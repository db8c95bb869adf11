"""`gentest suites`: the suite format with a valid example, every setting, every built-in suite
with its description and cost; and the optional `cost` key of a suite file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gentest.cli import main
from gentest.errors import GentestError
from gentest.suite_help import EXAMPLE, settings_rows
from gentest.suites import SETTING_KEYS, SUITE_KEYS, builtin_suites, load_suite, parse_suite

from conftest import dedent


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_suites_prints_the_format_every_setting_and_every_builtin_suite(capsys):
    code, out, _ = run(capsys, "suites")
    assert code == 0
    assert EXAMPLE.splitlines()[0] in out and "seed = [0, 1]" in out
    for key in SETTING_KEYS + SUITE_KEYS:
        assert key in out, key
    for name, path in builtin_suites().items():
        suite = load_suite(str(path))
        assert suite.cost, f"built-in suite {name} states no cost"
        # the table folds long cells over lines: compare word by word
        for text in (suite.description, suite.cost):
            assert all(word in out for word in text.split()), text
        assert f"│ {name} " in out


def test_the_example_is_a_valid_suite():
    suite = parse_suite(tomllib.loads(EXAMPLE), Path("label-sweep.toml"))
    assert suite.name == "label-sweep" and suite.cost and suite.measures
    assert len(suite.specs) == 6
    assert sorted({s.p for s in suite.specs if s.randomization == "labels"}) == [0.5, 1.0]


def test_the_settings_table_names_every_registered_dataset_model_and_randomization():
    from gentest.datasets import DATASETS
    from gentest.models import MODELS
    from gentest.randomizations import RANDOMIZATIONS
    from gentest.spec import TRAIN_FIELDS

    rows = {keys: (allowed, default) for keys, allowed, default in settings_rows()}
    for registry, key in ((DATASETS, "dataset"), (MODELS, "model"), (RANDOMIZATIONS, "randomization")):
        for name in registry:
            assert name in rows[key][0], f"{key} {name} is not in `gentest suites`"
    assert rows["optimizer, lr, momentum"][1] == f"{TRAIN_FIELDS['optimizer']}, {TRAIN_FIELDS['lr']}, {TRAIN_FIELDS['momentum']}"
    assert rows["seed"][1] == "0"


def test_help_points_to_gentest_suites(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "gentest suites" in out and "suites" in out.split("commands")[1]


def test_cost_is_optional_and_must_be_a_string(tmp_path):
    body = """
        [base]
        dataset = "mnist1d"
        model = "mlp"
    """
    path = tmp_path / "s.toml"
    path.write_text(dedent(body))
    assert load_suite(str(path)).cost == ""
    path.write_text(dedent('[suite]\ncost = "about 1 min on a 2-core CPU"\n' + dedent(body)))
    assert load_suite(str(path)).cost == "about 1 min on a 2-core CPU"
    path.write_text(dedent("[suite]\ncost = 4\n" + dedent(body)))
    with pytest.raises(GentestError, match=r"\[suite\] cost: must be a string"):
        load_suite(str(path))
