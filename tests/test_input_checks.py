"""Bad input found before any work (issue 10 point 6, issue 11 point 2): one sentence, exit 2,
nothing trained."""

from __future__ import annotations

import errno
import re
import sys
import tempfile
from pathlib import Path

import pytest

from gentest.cli import main
from gentest.errors import GentestError
from gentest.inputs import check_writable_dir, parse_measure_names
from gentest.suites import load_suite

from conftest import write_suite

# A folder even root cannot create anything in (Linux sysfs).
UNWRITABLE = Path("/sys/gentest-input-check")


def _unwritable_exists() -> bool:
    """Whether UNWRITABLE's folder exists and refuses new entries. False where it is missing (a
    machine without /sys) or accepts them: the tests that need it skip there, not fail."""
    if not UNWRITABLE.parent.is_dir():
        return False
    try:
        Path(tempfile.mkdtemp(dir=UNWRITABLE.parent)).rmdir()
    except OSError as e:
        return e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    return False


def test_the_unwritable_folder_counts_only_where_it_exists_and_refuses_writes(tmp_path, monkeypatch):
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "UNWRITABLE", tmp_path / "no-sys" / "gentest-input-check")  # no such folder
    assert not _unwritable_exists()
    monkeypatch.setattr(module, "UNWRITABLE", tmp_path / "gentest-input-check")  # a folder anyone may write in
    assert not _unwritable_exists()


needs_unwritable = pytest.mark.skipif(not _unwritable_exists(), reason="needs a folder nobody can write into (/sys on Linux)")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _suite_with(folder: Path, setting: str, value: str) -> Path:
    """The tiny suite with ``setting = value`` in [base] (replacing the suite's own line)."""
    path = write_suite(folder)
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{setting} =")]
    path.write_text("\n".join(lines).replace("[axes]", f"{setting} = {value}\n\n[axes]"))
    return path


def _nothing_trained(store: Path) -> bool:
    return not (store / "runs").exists() or not any((store / "runs").iterdir())


@pytest.mark.parametrize("setting,value", [("lr", "inf"), ("weight_decay", "inf"), ("lr", "nan"),
                                           ("stop_train_loss", "inf"), ("momentum", "-inf")])
def test_non_finite_numbers_are_refused_naming_file_and_key(tmp_path, setting, value):
    path = _suite_with(tmp_path, setting, value)
    with pytest.raises(GentestError) as e:
        load_suite(str(path))
    assert str(e.value).startswith(f"{path}: [base] {setting}: {value} is not allowed; expected ")


@pytest.mark.parametrize("setting,value,allowed", [
    ("dropout", "1.0", "a number in [0, 1)"), ("batch_size", "0", "an integer >= 1"),
    ("max_epochs", "0", "an integer >= 1"), ("stop_train_loss", "0", "a number > 0"),
    ("lr_decay", "1.5", "a number in (0, 1]"), ("momentum", "1", "a number in [0, 1)"),
])
def test_out_of_range_settings_are_refused(tmp_path, setting, value, allowed):
    path = _suite_with(tmp_path, setting, value)
    with pytest.raises(GentestError, match=rf"\[base\] {setting}: .* is not allowed; expected {re.escape(allowed)}$"):
        load_suite(str(path))


def test_a_suite_that_is_not_utf8_is_one_sentence(tmp_path, capsys):
    path = write_suite(tmp_path)
    path.write_bytes(path.read_bytes().replace(b'name = "tiny"', b'name = "t\xe9st"'))  # Latin-1 é
    code, out, err = run(capsys, "train", str(path), "--store", str(tmp_path / "store"))
    assert code == 2
    assert err.startswith(f"gentest: error: {path}: not UTF-8 text (byte ") and err.count("\n") == 1
    assert _nothing_trained(tmp_path / "store")


def test_a_folder_given_as_suite_says_it_is_a_folder(tmp_path):
    with pytest.raises(GentestError, match=rf"^suite {tmp_path} is a folder"):
        load_suite(str(tmp_path))


@pytest.mark.parametrize("text,message", [
    (",", "--measures ',' names no measure"),
    (" , ", "--measures ' , ' names no measure"),
    ("control.gap,,control.param_count", "--measures 'control.gap,,control.param_count' has an empty name"),
    ("control.gap,control.gap", "--measures lists 'control.gap' twice"),
    ("a, b ,a", "--measures lists 'a' twice"),
])
def test_bad_measure_lists_are_errors(text, message):
    with pytest.raises(GentestError, match="^" + re.escape(message)):
        parse_measure_names(text)


def test_measure_lists_keep_order_and_strip_spaces():
    assert parse_measure_names(" b , a") == ["b", "a"]
    assert parse_measure_names(None) is None


def test_evaluate_refuses_a_duplicate_measure_before_training(tmp_path, capsys):
    store = tmp_path / "store"
    code, out, err = run(capsys, "evaluate", str(write_suite(tmp_path)), "--measures", "control.gap,control.gap",
                         "--store", str(store), "--device", "cpu")
    assert (code, err) == (2, "gentest: error: --measures lists 'control.gap' twice\n")
    assert _nothing_trained(store)


def test_a_suite_listing_a_measure_twice_is_an_error(tmp_path):
    path = write_suite(tmp_path)
    path.write_text(path.read_text().replace('name = "tiny"', 'name = "tiny"\nmeasures = ["a", "b", "a"]'))
    with pytest.raises(GentestError, match=r"\[suite\] measures: 'a' is listed twice"):
        load_suite(str(path))


# ---- paths -------------------------------------------------------------------------------------

def test_check_writable_dir_accepts_a_new_or_existing_folder_and_leaves_nothing(tmp_path):
    check_writable_dir(tmp_path, "--store")
    check_writable_dir(tmp_path / "a" / "b", "--store")
    assert list(tmp_path.iterdir()) == []  # probes removed, nothing created


def test_check_writable_dir_refuses_files(tmp_path):
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(GentestError, match=rf"^--out {file} is a file, not a folder$"):
        check_writable_dir(file, "--out")
    with pytest.raises(GentestError, match=rf"^--store {file}/sub cannot be created: {file} is a file, not a folder$"):
        check_writable_dir(file / "sub", "--store")


@needs_unwritable
def test_check_writable_dir_refuses_an_unwritable_place():
    with pytest.raises(GentestError, match=rf"^--store {UNWRITABLE} is not writable \(it would be created in /sys\): "):
        check_writable_dir(UNWRITABLE, "--store")


@pytest.mark.parametrize("bad", ["file", "unwritable"])
@pytest.mark.parametrize("option", ["--store", "--out"])
def test_evaluate_checks_store_and_out_before_training(tmp_path, capsys, option, bad):
    if bad == "unwritable" and not _unwritable_exists():
        pytest.skip("needs a folder nobody can write into (/sys on Linux)")
    file = tmp_path / "a-file"
    file.write_text("x")
    target = file if bad == "file" else UNWRITABLE
    store = tmp_path / "store"
    args = {"--store": str(store), "--out": str(tmp_path / "out"), option: str(target)}
    code, out, err = run(capsys, "evaluate", str(write_suite(tmp_path)), "--device", "cpu",
                         "--store", args["--store"], "--out", args["--out"])
    assert code == 2 and err.startswith(f"gentest: error: {option} {target} ") and err.count("\n") == 1
    assert _nothing_trained(store)


def test_train_with_a_store_on_a_file_fails_before_training(tmp_path, capsys):
    file = tmp_path / "store"
    file.write_text("x")
    code, out, err = run(capsys, "train", str(write_suite(tmp_path)), "--store", str(file), "--device", "cpu")
    assert (code, err) == (2, f"gentest: error: --store {file} is a file, not a folder\n")


@needs_unwritable
def test_an_unwritable_data_root_is_refused_when_downloading(tmp_path, capsys):
    suite = tmp_path / "cifar.toml"
    suite.write_text('[base]\ndataset = "cifar10"\nmodel = "mlp"\n[axes]\nrandomization = ["none", "labels"]\n')
    code, out, err = run(capsys, "train", str(suite), "--store", str(tmp_path / "store"), "--download",
                         "--data-root", str(UNWRITABLE), "--device", "cpu")
    assert code == 2 and err.startswith(f"gentest: error: --data-root {UNWRITABLE} is not writable")


@pytest.mark.parametrize("command", ["runs", "report"])
def test_reading_a_missing_store_is_an_error(tmp_path, capsys, command):
    missing = tmp_path / "nowhere"
    code, out, err = run(capsys, command, "--store", str(missing))
    assert code == 2 and err.startswith(f"gentest: error: there is no run store at {missing} (the folder does not exist")


# ---- labels with p = 0 is the natural run (issue 11 point 2) -----------------------------------

def test_labels_with_p_0_is_the_natural_run(tmp_path):
    written_with_none = load_suite(str(write_suite(tmp_path, randomizations=("none", "labels"), name="a.toml")))
    written_with_p0 = load_suite(str(write_suite(tmp_path, randomizations=('{ name = "labels", p = 0.0 }', "labels"),
                                                 name="b.toml")))
    assert [s.key for s in written_with_p0.specs] == [s.key for s in written_with_none.specs]
    assert [s.randomization for s in written_with_p0.specs] == ["none", "none", "labels", "labels"]
    assert all(s.is_natural for s in written_with_p0.specs[:2])


def test_a_grid_with_both_none_and_labels_p_0_trains_the_natural_run_once(tmp_path):
    suite = load_suite(str(write_suite(tmp_path, randomizations=("none", '{ name = "labels", p = 0 }',
                                                                  '{ name = "labels", p = 0.5 }'), seeds=(0,))))
    assert [(s.randomization, s.p) for s in suite.specs] == [("none", 0.0), ("labels", 0.5)]
    assert len({s.key for s in suite.specs}) == len(suite.specs)
