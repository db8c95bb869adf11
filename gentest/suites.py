"""Suites: TOML files whose base settings and axes expand into a grid of RunSpecs.

A suite file::

    [suite]
    name = "quick"
    description = "MNIST-1D, 3x512 MLP: natural vs random labels vs random pixels"
    measures = ["control.gap"]            # optional: what `gentest evaluate` runs
    cost = "about 2 min on a 2-core CPU"  # optional: what running it costs, shown by `gentest suites`

    [base]                                # settings shared by every run
    dataset = "mnist1d"                   # a name, or a table {name = "cifar10", crop28 = true}
    model = { name = "mlp", hidden = [512, 512, 512] }
    lr = 0.05
    max_epochs = 200

    [axes]                                # the grid is the product of these lists
    randomization = ["none", "labels", { name = "labels", p = 0.5 }, "random-pixels"]
    seed = [0, 1, 2]
    recipe = [{ weight_decay = 0.0 }, { stop_train_acc = false, stop_train_loss = 0.01 }]  # paired settings

Suite files are UTF-8. ``labels`` with ``p = 0`` corrupts nothing: it is the natural run and
becomes ``"none"`` (same run key, trained once); settings that give the same run twice in a
grid give it once.

Built-in suites live in the repository's ``suites/`` folder (installed as ``gentest.builtin_suites``)
and are found by name; any other argument is read as a path. Unknown keys, unknown names and
out-of-range (or non-finite: ``lr = inf``) values raise :class:`GentestError` naming the file,
the key and what is allowed.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gentest.errors import GentestError
from gentest.spec import TRAIN_FIELDS, RunSpec, TrainSettings, freeze

SPEC_KEYS = ("dataset", "model", "randomization", "seed", "corrupt_test_labels", "learner")
SETTING_KEYS = SPEC_KEYS + tuple(TRAIN_FIELDS)
TOP_TABLES = ("suite", "base", "axes")
SUITE_KEYS = ("name", "description", "measures", "cost")
# An axis whose values are tables of settings applied together ("paired axes"): a training
# recipe, e.g. [{ weight_decay = 0.0 }, { weight_decay = 5e-4, lr_schedule = "exponential" }].
RECIPE = "recipe"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    specs: tuple[RunSpec, ...]
    measures: tuple[str, ...] = ()
    cost: str = ""  # what running it costs, in words ("about 4 min on a 2-core CPU"); optional


def builtin_suites() -> dict[str, Path]:
    """Names and paths of the suites shipped with gentest."""
    try:
        folder = resources.files("gentest.builtin_suites")
    except ModuleNotFoundError:
        # gentest imported from a source checkout (e.g. `python -m pytest` in the repository,
        # which puts the checkout first on sys.path): the suites are the checkout's suites/.
        folder = Path(__file__).resolve().parent.parent / "suites"
    return {p.name.removesuffix(".toml"): Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def resolve_suite(name_or_path: str) -> Path:
    builtins = builtin_suites()
    if name_or_path in builtins:
        return builtins[name_or_path]
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise GentestError(f"suite {path} is a folder; give a suite TOML file or a built-in name ({', '.join(sorted(builtins))})")
    raise GentestError(
        f"no suite '{name_or_path}': not a built-in ({', '.join(sorted(builtins))}) and no such file"
    )


def load_suite(name_or_path: str) -> Suite:
    """Read, validate and expand a suite given by built-in name or path."""
    path = resolve_suite(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise GentestError(f"{path}: not UTF-8 text (byte {e.start} cannot be decoded); save the suite as UTF-8") from None
    except OSError as e:
        raise GentestError(f"{path}: cannot be read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise GentestError(f"{path}: not valid TOML ({e})") from None
    return parse_suite(doc, path)


def parse_suite(doc: dict[str, Any], path: Path) -> Suite:
    def fail(where: str, message: str) -> GentestError:
        return GentestError(f"{path}: {where}: {message}")

    _check_keys(doc, TOP_TABLES, lambda k: fail(f"table [{k}]", f"unknown; allowed tables: {', '.join(TOP_TABLES)}"))
    meta, base, axes = (doc.get(t, {}) for t in TOP_TABLES)
    for table, value in (("suite", meta), ("base", base), ("axes", axes)):
        if not isinstance(value, dict):
            raise fail(table, "must be a table")
    _check_keys(meta, SUITE_KEYS, lambda k: fail(f"[suite] key '{k}'", f"unknown; allowed: {', '.join(SUITE_KEYS)}"))
    allowed = ", ".join(SETTING_KEYS)
    _check_keys(base, SETTING_KEYS, lambda k: fail(f"[base] key '{k}'", f"unknown; allowed: {allowed}"))
    _check_keys(axes, SETTING_KEYS + (RECIPE,),
                lambda k: fail(f"[axes] key '{k}'", f"unknown; allowed: {allowed}, {RECIPE}"))
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise fail(f"[axes] {key}", "must be a non-empty list of values")
        for value in values:
            if key == RECIPE:
                _recipe_error(value, axes, lambda msg: fail(f"[axes] {RECIPE}", msg))
            else:
                _setting_error(key, value, lambda msg: fail(f"[axes] {key}", msg))
    for key, value in base.items():
        _setting_error(key, value, lambda msg, key=key: fail(f"[base] {key}", msg))
    for key in ("dataset", "model"):
        if key == "model" and ("learner" in base or "learner" in axes):
            continue  # a non-SGD learner needs no model; build_spec checks each run
        if key not in base and key not in axes:
            raise fail(f"key '{key}'", "required in [base] or [axes]")

    measures = meta.get("measures", [])
    if not isinstance(measures, list) or not all(isinstance(m, str) and m.strip() for m in measures):
        raise fail("[suite] measures", "must be a list of measure names")
    if not isinstance(meta.get("cost", ""), str):
        raise fail("[suite] cost", "must be a string, e.g. \"about 4 min on a 2-core CPU\"")
    twice = sorted({m for m in measures if measures.count(m) > 1})
    if twice:
        raise fail("[suite] measures", f"'{twice[0]}' is listed twice")

    specs: dict[str, RunSpec] = {}
    for combo in itertools.product(*axes.values()):
        settings = {**base, **dict(zip(axes, combo))}
        settings |= settings.pop(RECIPE, {})  # a recipe sets several settings at once
        try:
            spec = build_spec(settings)
        except GentestError as e:
            raise GentestError(f"{path}: {e}") from None
        # Settings that mean the same run (labels with p = 0 and "none", say) give one spec.
        specs.setdefault(spec.key, spec)
    return Suite(
        name=str(meta.get("name", path.stem)),
        path=path,
        description=str(meta.get("description", "")),
        specs=tuple(specs.values()),
        measures=tuple(measures),
        cost=meta.get("cost", ""),
    )


def build_spec(settings: dict[str, Any]) -> RunSpec:
    """One RunSpec from merged settings; dataset/model/randomization may be names or tables."""
    from gentest.datasets import validate_options
    from gentest.randomizations import canonical_p

    def part(key: str, check):
        try:
            return check()
        except GentestError as e:
            raise GentestError(f"{key}: {e}") from None

    dataset, dataset_args = part("dataset", lambda: _named(settings["dataset"], "dataset"))
    learner, learner_args = part("learner", lambda: _learner(settings.get("learner", "sgd")))
    if learner != "sgd":  # the learner's model: named after it, built by gentest.learners
        from gentest.learners import model_name

        model, model_args = model_name(learner, learner_args), {}
    elif "model" not in settings:
        raise GentestError("key 'model': required in [base] or [axes] for the 'sgd' learner")
    else:
        model, model_args = part("model", lambda: _named(settings["model"], "model"))
    randomization, rnd_args = part("randomization", lambda: _named(settings.get("randomization", "none"), "randomization"))
    from gentest.randomizations import PIXEL_KINDS, PIXEL_UNITS

    allowed_options = {"p", "unit"} if randomization in PIXEL_KINDS else {"p"}
    unknown = set(rnd_args) - allowed_options
    if unknown:
        raise GentestError(f"randomization: option '{sorted(unknown)[0]}' is unknown for '{randomization}'; "
                           f"allowed: {', '.join(sorted(allowed_options))}")
    pixel_unit = rnd_args.get("unit", "pixel")
    if pixel_unit not in PIXEL_UNITS:
        raise GentestError(f"randomization: unit must be one of {', '.join(repr(u) for u in PIXEL_UNITS)}, "
                           f"got {pixel_unit!r}")
    train = {k: settings[k] for k in TRAIN_FIELDS if k in settings}
    if train.get("stop_train_acc") is False:  # `stop_train_acc = false`: no accuracy rule
        train["stop_train_acc"] = None
        if train.get("stop_train_loss") is None:
            raise GentestError("stop_train_acc = false leaves no stopping rule: set stop_train_loss "
                               "(e.g. 0.01, train cross-entropy) as well")
    p = part("randomization", lambda: canonical_p(randomization, rnd_args.get("p")))
    if randomization == "labels" and p == 0.0:
        # No label corrupted: the natural run itself. The same key as "none", so it is trained
        # once and scored as the natural twin of its pair, not as a randomized twin with gap 0.
        randomization = "none"
    return RunSpec(
        dataset=dataset,
        dataset_args=freeze(part("dataset", lambda: validate_options(dataset, dataset_args))),
        model=model,
        model_args=freeze(part("model", lambda: _model_options(model, model_args)) if learner == "sgd" else {}),
        randomization=randomization,
        p=p,
        seed=settings.get("seed", 0),
        corrupt_test_labels=bool(settings.get("corrupt_test_labels", False)),
        train=TrainSettings(**train),
        learner=learner,
        learner_args=freeze(learner_args),
        pixel_unit=pixel_unit,
    )


def _learner(value: Any) -> tuple[str, dict[str, Any]]:
    """(name, validated options) of a suite's ``learner`` (a name or a table); see gentest.learners."""
    from gentest.learners import validate_learner

    name, options = _named(value, "learner")
    return name, validate_learner(name, options)

def _model_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validated model options without dropout, which is a training setting of the spec."""
    from gentest.models import validate_model_args

    if "dropout" in options:
        raise GentestError("dropout is a training setting: write 'dropout = ...' in [base] or [axes]")
    validated = validate_model_args(model, options)
    validated.pop("dropout", None)
    return validated


def _named(value: Any, what: str) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        options = dict(value)
        return options.pop("name"), options
    raise GentestError(f"{what} must be a name or a table with a 'name' key, got {value!r}")


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], error) -> None:
    for key in table:
        if key not in allowed:
            raise error(key)


# Type and range of each training setting: (types, check, description of what is allowed).
_POSITIVE = (lambda v: v > 0, "a number > 0")
_RULES: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "optimizer": ((str,), lambda v: v == "sgd", "'sgd' (SGD with momentum)"),
    "lr": ((int, float), *_POSITIVE),
    "momentum": ((int, float), lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "lr_schedule": ((str,), lambda v: v in ("constant", "exponential"), "'constant' or 'exponential'"),
    "lr_decay": ((int, float), lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "batch_size": ((int,), lambda v: v >= 1, "an integer >= 1"),
    "weight_decay": ((int, float), lambda v: v >= 0, "a number >= 0"),
    "augment": ((bool,), lambda v: True, "true or false"),
    "dropout": ((int, float), lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "stop_train_acc": ((bool, int, float), lambda v: v is False or (v is not True and 0 < v <= 1),
                       "a number in (0, 1], or false for no accuracy rule"),
    "stop_train_loss": ((int, float), *_POSITIVE),
    "max_epochs": ((int,), lambda v: v >= 1, "an integer >= 1"),
    "seed": ((int,), lambda v: v >= 0, "an integer >= 0"),
    "corrupt_test_labels": ((bool,), lambda v: True, "true or false"),
}


def _recipe_error(value: Any, axes: dict[str, Any], fail) -> None:
    """Raise ``fail(message)`` unless a recipe is a non-empty table of known, valid settings that
    no other axis also varies."""
    if not isinstance(value, dict) or not value:
        raise fail(f"each recipe must be a table of settings, e.g. {{ weight_decay = 0.0005 }}, got {value!r}")
    for key, setting in value.items():
        if key not in SETTING_KEYS:
            raise fail(f"recipe key '{key}' is unknown; allowed: {', '.join(SETTING_KEYS)}")
        if key in axes:
            raise fail(f"'{key}' is both an axis and set by a recipe; use one of the two")
        _setting_error(key, setting, lambda msg, key=key: fail(f"{key}: {msg}"))


def _setting_error(key: str, value: Any, fail) -> None:
    """Raise ``fail(message)`` if a scalar setting has the wrong type or range."""
    if key not in _RULES:
        return  # dataset, model, randomization: checked by their registries in build_spec
    types, ok, allowed = _RULES[key]
    is_bool = isinstance(value, bool)
    not_finite = isinstance(value, float) and not math.isfinite(value)  # inf passes "> 0" but trains NaN weights
    if (is_bool and bool not in types) or not isinstance(value, types) or not_finite or not ok(value):
        raise fail(f"{value!r} is not allowed; expected {allowed}{' (finite)' if not_finite else ''}")
