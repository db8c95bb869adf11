"""Measures register with their source; duplicates, bad declarations and broken plug-ins are
one clear sentence that names where they came from."""

from __future__ import annotations

import pytest

from gentest.errors import GentestError
from gentest.registry import all_measures, load_plugin, measure, select


def test_builtins_register_through_the_entry_point_group():
    found = all_measures()
    assert {"control.gap", "control.param_count"} <= set(found)
    gap = found["control.gap"]
    assert gap.family == "control" and gap.orientation == "higher-worse"
    assert gap.source.startswith("entry point measures.controls (gentest-harness)")
    assert gap.description.startswith("The generalization gap")


def test_decorator_records_declaration(clean_registry):
    @measure("test.double_gap", family="test", orientation="higher-better", requires={"init"}, version=3)
    def double_gap(ctx):
        """Twice the gap."""
        return 2 * ctx.metrics["gap"]

    m = clean_registry._MEASURES["test.double_gap"]
    assert m.fn is double_gap and m.version == "3" and m.requires == frozenset({"init"})
    assert m.info()["description"] == "Twice the gap."


def test_missing_orientation_and_unknown_requirement_are_clear(clean_registry):
    with pytest.raises(GentestError, match=r"measure 'test.x' in .* needs orientation='higher-worse' or 'higher-better', got None"):
        measure("test.x", family="test")(lambda ctx: 0.0)
    with pytest.raises(GentestError, match=r"requires unknown 'gpu'; allowed: init, train_data"):
        measure("test.y", family="test", orientation="higher-worse", requires={"gpu"})(lambda ctx: 0.0)


def test_duplicate_name_names_both_sources(clean_registry, tmp_path):
    plugin = tmp_path / "dup.py"
    plugin.write_text(
        "from gentest import measure\n"
        "@measure('control.gap', family='mine', orientation='higher-worse')\n"
        "def mine(ctx):\n    return 0.0\n"
    )
    all_measures()
    with pytest.raises(GentestError, match=r"measure 'control.gap' is defined twice: in entry point measures.controls .* and in plugin .*dup.py"):
        load_plugin(plugin)


def test_plugin_that_cannot_be_imported_names_the_file(clean_registry, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy\nraise ImportError('needs a package you lack')\n")
    with pytest.raises(GentestError, match=r"could not import measures from plugin .*broken.py: ImportError: needs a package you lack"):
        load_plugin(broken)
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    with pytest.raises(GentestError, match=r"plugin .*syntax.py: SyntaxError"):
        load_plugin(syntax)
    with pytest.raises(GentestError, match=r"plugin file .*nope.py does not exist"):
        load_plugin(tmp_path / "nope.py")


def test_plugin_loaded_twice_registers_once(clean_registry, tmp_path):
    plugin = tmp_path / "ok.py"
    plugin.write_text(
        "from gentest import measure\n"
        "@measure('test.ok', family='t', orientation='higher-worse')\n"
        "def ok(ctx):\n    return 1.0\n"
    )
    found = all_measures([plugin, plugin])
    assert found["test.ok"].source == f"plugin {plugin.resolve()}"


def test_select_unknown_name_suggests_close_ones():
    available = all_measures()
    with pytest.raises(GentestError, match=r"unknown measure 'control.gapp'; did you mean control.gap"):
        select(["control.gapp"], available)
    assert [m.name for m in select(["control.gap"], available)] == ["control.gap"]
