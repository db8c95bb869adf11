"""Learners other than SGD: the closed-form fits of Zhang et al. (2017), §4 and §5.

A run's ``learner`` (RunSpec.learner, default ``"sgd"``: train ``model`` with SGD, see
:mod:`gentest.training`) may name one of these instead; its options are ``learner_args``.
A suite writes ``learner = { name = "kernel-interpolation", features = "gabor" }`` and needs
no ``model``: the run's model name is derived from the learner (e.g.
``kernel-interpolation/gabor``) so reports and environments tell the variants apart.

================================  =========================================================
``kernel-interpolation``          Gaussian-kernel interpolation, (K + λI)α = Y (§5, eq. 3)
``linear-minnorm``                the minimum-ℓ2-norm solution of Φw = Y (§5)
``linear-sgd``                    SGD from w = 0 on the same problem: its SGD twin (§5)
``theorem1``                      the 2n + d-weight ReLU network fitting any labels (Thm. 1)
================================  =========================================================

Every learner fits the training data exactly as given (randomized labels included) and
returns a :class:`~gentest.training.TrainResult` like SGD training does; ``fit`` is what
``gentest.training.train`` delegates to. ``rebuild_model`` gives a stored run's module back to
the measure context (a :class:`~gentest.learners.kernel.KernelMachine` placeholder for the
kernel learner, whose use as a network raises NotApplicable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from gentest.errors import GentestError

SGD = "sgd"


@dataclass(frozen=True)
class LearnerInfo:
    name: str
    description: str
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    fit: Callable[..., Any]  # (spec, options, data, device) -> TrainResult
    rebuild: Callable[..., Any]  # (options, state, input_shape, num_classes) -> nn.Module
    model_name: Callable[[dict[str, Any]], str]


def _registry() -> dict[str, LearnerInfo]:
    from gentest.learners import kernel, linear, theorem1

    def linear_info(name: str, description: str) -> LearnerInfo:
        return LearnerInfo(
            name, description,
            validate=lambda o: linear.validate(name, o),
            fit=lambda spec, o, data, device: linear.fit(spec, name, o, data, device),
            rebuild=lambda o, state, shape, c: linear.rebuild(name, o, state, shape, c),
            model_name=lambda o: linear.model_name(name, o),
        )

    return {
        kernel.NAME: LearnerInfo(kernel.NAME, "Gaussian-kernel interpolation (K + ridge·I) α = Y, float64",
                                 kernel.validate, kernel.fit, kernel.rebuild, kernel.model_name),
        linear.MINNORM: linear_info(linear.MINNORM, "minimum-l2-norm solution of Phi w = Y on fixed features"),
        linear.SGD: linear_info(linear.SGD, "SGD from zero on the squared loss of Phi w = Y: the min-norm twin"),
        theorem1.NAME: LearnerInfo(theorem1.NAME, "Theorem 1: a 2n + d weight ReLU net fitting any labels",
                                   theorem1.validate, theorem1.fit, theorem1.rebuild, theorem1.model_name),
    }


def learners() -> dict[str, LearnerInfo]:
    """The non-SGD learners by name."""
    return _registry()


def learner_names() -> list[str]:
    return [SGD, *learners()]


def info(name: str) -> LearnerInfo:
    available = learners()
    if name not in available:
        raise GentestError(f"unknown learner '{name}'; available: {', '.join(learner_names())}")
    return available[name]


def validate_learner(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Completed canonical options of learner ``name``; GentestError (one sentence) otherwise."""
    if name == SGD:
        if options:
            raise GentestError(
                f"learner 'sgd' takes no options (its settings are the training settings such as lr); got '{sorted(options)[0]}'"
            )
        return {}
    return info(name).validate(dict(options))


def model_name(name: str, options: dict[str, Any]) -> str:
    """The model name a learner's runs carry, e.g. ``kernel-interpolation/gabor``."""
    return info(name).model_name(options)


from gentest.learners.linalg import DEFAULT_MEMORY_GB as DEFAULT_BUDGET_GB  # noqa: E402


def _options(spec) -> dict[str, Any]:
    from gentest.spec import thaw

    return thaw(spec.learner_args)


def fit(spec, data, device):
    """Fit ``spec``'s learner on ``data`` (already randomized): a TrainResult of the same shape
    as SGD training's (a one-row curve for the closed-form learners)."""
    return info(spec.learner).fit(spec, _options(spec), data, device)


def preflight(spec, n_train: int) -> None:
    """Checks that need only the spec and the training-set size, run before any work goes out
    (so a kernel too large for its memory budget is one sentence and exit 2, not a failed run)."""
    if spec.learner == "kernel-interpolation":
        from gentest.learners.linalg import check_memory

        check_memory(spec.learner, n_train, float(_options(spec).get("kernel_memory_gb", DEFAULT_BUDGET_GB)))


def rebuild_model(spec, state, input_shape, num_classes: int):
    """The stored run's module with ``state`` loaded (eval mode)."""
    return info(spec.learner).rebuild(_options(spec), state, tuple(input_shape), num_classes)
