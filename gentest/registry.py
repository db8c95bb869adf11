"""The measure registry: the ``@measure`` decorator and plug-in discovery.

A measure is a function of a :class:`~gentest.context.MeasureContext` returning one float,
declared with its name, family, orientation (does a larger value claim *worse*
generalization?), what it needs, and a version. Built-in measures (the ``measures`` package)
register exactly as third-party ones do: through the entry-point group ``gentest.measures``,
whose entries name modules that call ``@measure`` on import, or through ``--plugin FILE``.

    from gentest import measure

    @measure("frobenius_distance_from_init", family="norm", orientation="higher-worse", requires={"init"})
    def frobenius_distance_from_init(ctx):
        return sum((w - w0).pow(2).sum() for w, w0 in ctx.weights(init=True)).sqrt().item()

A duplicate name (also twice in one file: both lines are named), a missing or unknown
orientation, or a plug-in that cannot be imported (an exception, or ``sys.exit``, while it is
imported; a folder given as a plug-in file) is a :class:`GentestError` that names the source.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable

from gentest.errors import GentestError

ENTRY_POINT_GROUP = "gentest.measures"
ORIENTATIONS = ("higher-worse", "higher-better")
# What a measure may declare it needs; the context provides each of these.
REQUIREMENTS = ("init", "train_data", "test_data", "grad", "hvp", "per_sample_grad", "retrain")
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Measure:
    name: str
    fn: Callable[[Any], Any] = field(repr=False)
    family: str
    orientation: str
    requires: frozenset[str] = frozenset()
    version: str = "1"
    source: str = "?"
    description: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "orientation": self.orientation,
            "requires": sorted(self.requires),
            "version": self.version,
            "source": self.source,
            "description": self.description,
        }


# Where the module being imported came from ("entry point measures.norms (gentest-harness)",
# "plugin /path/file.py"), so errors and `gentest measures` can name it.
_current_source: contextvars.ContextVar[str | None] = contextvars.ContextVar("source", default=None)
_MEASURES: dict[str, Measure] = {}


def measure(
    name: str,
    *,
    family: str,
    orientation: str | None = None,
    requires: Iterable[str] = (),
    version: str | int = "1",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Callable[[Callable], Callable]:
    """Register the decorated function as measure ``name`` (see the module docstring)."""
    def wrap(fn: Callable) -> Callable:
        source = _source_of(fn)
        if orientation not in ORIENTATIONS:
            raise GentestError(
                f"measure '{name}' in {source} needs orientation='higher-worse' or 'higher-better', got {orientation!r}"
            )
        unknown = sorted(set(requires) - set(REQUIREMENTS))
        if unknown:
            raise GentestError(
                f"measure '{name}' in {source} requires unknown '{unknown[0]}'; allowed: {', '.join(REQUIREMENTS)}"
            )
        doc = (fn.__doc__ or "").strip().splitlines()
        m = Measure(
            name=name,
            fn=fn,
            family=family,
            orientation=orientation,
            requires=frozenset(requires),
            version=str(version),
            source=source,
            description=doc[0] if doc else "",
            timeout_s=timeout_s,
        )
        register(m)
        return fn

    return wrap


def _source_of(fn: Callable) -> str:
    source = _current_source.get()
    if source is None:  # imported directly, not through an entry point or --plugin
        return f"module {fn.__module__}"
    # An entry-point module may import another measure module (shared helpers): credit each
    # measure to the module that defines it, not to the entry point being loaded.
    if source.startswith("entry point "):
        dist = source.rsplit(" (", 1)[1] if " (" in source else "?)"
        return f"entry point {fn.__module__} ({dist}"
    return source


def register(m: Measure) -> None:
    existing = _MEASURES.get(m.name)
    if existing is not None and existing.fn is not m.fn:
        if existing.source == m.source and _definition(existing.fn) == _definition(m.fn):
            return  # the same definition imported again (e.g. a module imported twice): keep the first
        here, there = _place(existing), _place(m)
        if existing.source == m.source:
            raise GentestError(f"measure '{m.name}' is defined twice in {m.source}: at {here} and at {there}")
        raise GentestError(f"measure '{m.name}' is defined twice: in {existing.source} ({here}) and in {m.source} ({there})")
    _MEASURES[m.name] = m


def _definition(fn: Callable) -> tuple[str, str, int]:
    """Where a function is defined: file, qualified name and first line (its first decorator's)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ("?", getattr(fn, "__qualname__", "?"), 0)
    return (code.co_filename, fn.__qualname__, code.co_firstlineno)


def _place(m: Measure) -> str:
    filename, qualname, line = _definition(m.fn)
    return f"line {line} ({qualname})" if line else qualname


_loaded_entry_points = False
_loaded_plugins: set[Path] = set()


def load_entry_points() -> None:
    """Import every module named in the ``gentest.measures`` entry-point group (once)."""
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "?"
        _import_as(f"entry point {ep.value} ({dist})", lambda ep=ep: ep.load())
        # Measures of this module that were imported directly before (a test, a script)
        # registered as "module ..."; credit them to the entry point that names the module.
        for name, m in list(_MEASURES.items()):
            if m.fn.__module__ == ep.module and m.source == f"module {ep.module}":
                _MEASURES[name] = dataclasses.replace(m, source=f"entry point {ep.module} ({dist})")


def load_plugin(path: str | Path) -> None:
    """Import a measure plug-in file, registering the measures it defines."""
    path = Path(path).resolve()
    if path in _loaded_plugins:
        return
    if path.is_dir():
        raise GentestError(f"plugin {path} is a folder; give a Python file that defines measures (--plugin path/to/file.py)")
    if not path.is_file():
        raise GentestError(f"plugin file {path} does not exist")
    module_name = "gentest_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]

    def load() -> None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)

    _import_as(f"plugin {path}", load)
    _loaded_plugins.add(path)


def _import_as(source: str, load: Callable[[], Any]) -> None:
    token = _current_source.set(source)
    try:
        load()
    except GentestError:
        raise
    except KeyboardInterrupt:  # importing is quick: take it as the user's Ctrl-C
        raise
    except SystemExit as e:  # a plug-in must not end gentest while it is imported
        code = "" if e.code is None else repr(e.code)
        raise GentestError(f"could not import measures from {source}: it called sys.exit({code}) while being imported") from None
    except BaseException as e:  # a plug-in's own bug: report where, in one sentence
        raise GentestError(f"could not import measures from {source}: {type(e).__name__}: {e}") from None
    finally:
        _current_source.reset(token)


def all_measures(plugins: Iterable[str | Path] = ()) -> dict[str, Measure]:
    """Every registered measure: built-ins and entry points, then ``plugins`` files."""
    load_entry_points()
    for path in plugins:
        load_plugin(path)
    return dict(sorted(_MEASURES.items()))


def select(names: Iterable[str], available: dict[str, Measure]) -> list[Measure]:
    """The measures called ``names``; an unknown name is a GentestError listing close ones."""
    chosen = []
    for name in names:
        if name not in available:
            import difflib

            close = difflib.get_close_matches(name, available, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see `gentest measures`"
            raise GentestError(f"unknown measure '{name}'{hint}")
        chosen.append(available[name])
    return chosen
