"""What ``gentest suites`` prints: the suite file format, with an example, and the built-in suites.

The settings and their defaults come from :mod:`gentest.suites` and :class:`gentest.spec.TrainSettings`
(tests keep the text and the registries of datasets, models and randomizations in step).
"""

from __future__ import annotations

from typing import Any

INTRO = (
    "A suite is a TOML file: [suite] says what it is, [base] holds the settings every run shares, and "
    "each list in [axes] is one axis of the grid of runs (their product). Run one by path "
    "(gentest evaluate my-suite.toml) or a built-in one by name (gentest evaluate quick). Natural and "
    "randomized twins (runs that differ only in randomization) share their seed, initial weights and "
    "batch order, and are paired for scoring."
)

EXAMPLE = """\
[suite]
name = "label-sweep"                        # optional (default: the file's name); names the report folder
description = "MNIST-1D, MLP 1x512: label corruption 0, 0.5 and 1, 2 seeds"
measures = ["norm.param_l2", "margin.output_margin"]   # optional (default: every registered measure)
cost = "6 small runs: minutes on a CPU"     # optional: what running it costs, for `gentest suites`

[base]                                      # settings shared by every run
dataset = { name = "mnist1d", train_size = 1000 }
model = { name = "mlp", hidden = [512] }
lr = 0.05
max_epochs = 200

[axes]                                      # the grid is the product of these lists
randomization = ["none", { name = "labels", p = 0.5 }, "labels"]
seed = [0, 1]
"""

SUITE_TABLE = (
    ("name", "the suite's name: its report folder, and how `gentest report` lists it", "the file's name"),
    ("description", "one line, shown by `gentest suites`", "none"),
    ("measures", "measure names that `gentest evaluate` runs (controls are always added)", "every registered measure"),
    ("cost", "what running the suite costs, in words", "none"),
)

# (setting keys, what is allowed); defaults are filled in by settings_rows().
SETTINGS = (
    (("dataset",), "mnist1d (embedded), synthetic, cifar10, cifar100, mnist, fashion-mnist, svhn; a name or a "
                   "table with options train_size, test_size; images: whiten; CIFAR/SVHN: crop28"),
    (("model",), "mlp (hidden = [512]), cnn1d (channels), inception (batchnorm, bn_scale), alexnet; a name or a "
                 "table with options (not needed by a closed-form learner)"),
    (("learner",), "sgd (train the model with the settings below), or a closed-form learner of Zhang et al. "
                   "section 5: kernel-interpolation, linear-minnorm, linear-sgd, theorem1; a name or a table "
                   "with options such as { name = \"kernel-interpolation\", features = \"gabor\" }"),
    (("randomization",), "none, labels (p in [0, 1], default 1), shuffled-pixels, random-pixels (unit = \"pixel\": "
                         "a colour pixel's channel values move together, the default; \"value\": every value on "
                         "its own), gaussian; a name or a table such as { name = \"labels\", p = 0.5 }"),
    (("corrupt_test_labels",), "corrupt the test labels too (labels only): true or false"),
    (("optimizer", "lr", "momentum"), "SGD with momentum: sgd, a number > 0, a number in [0, 1)"),
    (("lr_schedule", "lr_decay"), "constant or exponential (lr * lr_decay per epoch); lr_decay in (0, 1]"),
    (("batch_size", "weight_decay", "dropout"), "an integer >= 1, a number >= 0, a number in [0, 1)"),
    (("augment",), "random crop (4-pixel padding) and flip, images only: true or false"),
    (("stop_train_acc", "stop_train_loss", "max_epochs"),
     "stop when train accuracy >= the first or train cross-entropy < the second, after at most this many epochs; "
     "stop_train_acc = false leaves the cross-entropy rule alone (Jiang et al.)"),
    (("seed",), "initialization, batch order and randomization: an integer >= 0"),
    (("recipe",), "[axes] only: a list of tables of settings applied together (paired axes), e.g. "
                  "recipe = [{ weight_decay = 0.0 }, { stop_train_acc = false, stop_train_loss = 0.01 }]"),
)

_SPEC_DEFAULTS = {"dataset": "required", "model": "required (sgd)", "learner": "sgd", "recipe": "none", "randomization": "none", "corrupt_test_labels": False,
                  "seed": 0}


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def settings_rows() -> list[tuple[str, str, str]]:
    """(keys, allowed, defaults) per row; defaults read from TrainSettings, so they cannot drift."""
    from gentest.spec import TRAIN_FIELDS

    defaults = {**TRAIN_FIELDS, **_SPEC_DEFAULTS}
    return [(", ".join(keys), allowed, ", ".join(_shown(defaults[k]) for k in keys)) for keys, allowed in SETTINGS]


def builtin_rows() -> list[tuple[str, int, str, str]]:
    """(name, number of runs, description, cost) of every built-in suite."""
    from gentest.suites import builtin_suites, load_suite

    suites = [load_suite(str(path)) for _, path in sorted(builtin_suites().items())]
    return [(s.name, len(s.specs), s.description, s.cost or "not stated") for s in suites]
