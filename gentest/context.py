"""MeasureContext: everything a measure may look at for one stored run.

Each measure call gets its own context with fresh copies of the trained and the initial model
(in eval mode), so a measure that changes weights cannot affect another. Contexts of the same
run share a :class:`RunCache`: logits, margins and per-layer weight matrices are computed once,
from pristine copies, however many measures ask for them.

Conventions that measures rely on:

- ``x_train, y_train`` are the training data *as trained*: randomized labels or inputs
  included. ``x_test, y_test`` are the test data as evaluated (clean labels unless the suite
  set ``corrupt_test_labels``).
- ``margins(split)`` is f_y(x) − max_{j≠y} f_j(x) on the logits, **sign kept**: negative for a
  misclassified point (the pitfall of taking ``.abs()``, see anchors.md §3).
- ``layers()`` lists the weight matrices of the Linear and Conv layers in forward order, each
  reshaped to (out, in·k…) (conv kernels as reshaped matrices, not exact conv operators), with
  the matching initial matrix. Biases are carried beside the matrices; normalization layers
  are not layers of their own.
- BatchNorm is **folded** into the layer it directly follows: ``MeasureContext.layers()``
  (``fold_bn=True``, the default) gives the matrices of the network in which every BatchNorm
  (eval mode, running statistics) has been absorbed into the preceding Linear/Conv, per
  output channel: W' = W·γ/√(var+ε), b' = (b − μ)·γ/√(var+ε) + β (b = 0 for a layer without
  bias; γ = 1 for the shift-only BatchNorm of the Inception model or an affine-free one, β =
  0 without affine). The trained and the initial model are folded alike, each with its own
  running statistics. A model without BatchNorm gets exactly the unfolded layers (the same
  tensors). A BatchNorm that does not directly follow a Linear/Conv inside an
  ``nn.Sequential`` (pre-activation nets, a BatchNorm first in its container, one inside a
  custom module whose forward order is unknown) cannot be folded: ``layers()`` then raises
  :class:`~gentest.errors.NotApplicable`. ``layers(fold_bn=False)`` is the raw view (no
  folding, never raises for that reason); :meth:`MeasureContext.folded_model` is the folded
  network itself (BatchNorm replaced by ``nn.Identity``).
- Closed-form learners (:mod:`gentest.learners`): ``kernel()`` gives a kernel-interpolation
  run's α, K and RKHS norm, ``linear_solution()`` a min-norm/SGD linear run's w; both raise
  :class:`NotApplicable` on other runs. A kernel run has no ``nn.Module``: calling or walking
  ``ctx.model`` raises NotApplicable, so measures that need a network say n/a there.
- ``generator`` is seeded from the run's *pair*, not the run (:func:`random_stream_seed`): the
  twins of a pair draw the same random numbers (common random numbers). ``stream(name)`` gives
  the generator of any other named stream, seeded the same way (for draws shared between
  measures), and ``shared(key, compute)`` the per-run cache that such shared computations use.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from gentest.datasets import DataSplit
from gentest.errors import NotApplicable
from gentest.models import build_model
from gentest.randomizations import Randomized
from gentest.spec import thaw
from gentest.store import Run

EVAL_BATCH = 4096
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def concatenates_children(module: nn.Module) -> bool:
    """Support query for measures that walk a network's modules: True for a container whose
    forward concatenates its children's outputs along channels, so that paths through it add
    up (gentest's Inception and Downsample blocks). Any model, gentest's or a user's, declares it
    with a class attribute ``concatenates_children = True``; measures need import no model class."""
    return bool(getattr(module, "concatenates_children", False))


def standard_batchnorm_subclasses(model: nn.Module) -> set[type]:
    """Support query: the BatchNorm2d subclasses in ``model`` that keep BatchNorm2d's forward
    (e.g. gentest's shift-only BatchNorm, whose scale is a fixed buffer of ones): they compute
    exactly an ``nn.BatchNorm2d``, so tools that look modules up by exact class (BackPACK) may
    treat them as one."""
    return {
        type(m) for m in model.modules()
        if isinstance(m, nn.BatchNorm2d) and type(m) is not nn.BatchNorm2d and type(m).forward is nn.BatchNorm2d.forward
    }


@dataclass(frozen=True)
class Layer:
    """One Linear or Conv layer: its name in the model, trained and initial weight matrices."""

    name: str
    kind: str
    weight: torch.Tensor  # (out, in·k…)
    initial: torch.Tensor
    bias: torch.Tensor | None
    initial_bias: torch.Tensor | None


def _describe(name: str, module: nn.Module) -> str:
    return f"{type(module).__name__} '{name}'" if name else type(module).__name__


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval-mode function) with every BatchNorm folded into the layer it follows.

    Each ``nn.BatchNorm1d/2d/3d`` (any ``_BatchNorm`` subclass, e.g. the shift-only
    ``ShiftOnlyBatchNorm2d`` whose scale is a buffer of ones) that is the child right after a
    Linear/Conv1d/2d/3d in the same ``nn.Sequential`` is absorbed into that layer, per output
    channel c, with its running statistics (the eval-mode function):

        s_c = γ_c / √(var_c + ε),  W'_c = s_c·W_c,  b'_c = (b_c − μ_c)·s_c + β_c

    (b = 0 when the layer has no bias — a bias Parameter is then added — γ = 1 and β = 0 for an
    affine-free BatchNorm), and the BatchNorm is replaced by ``nn.Identity``. The arithmetic is
    done in float64 and stored in the layer's dtype. The original model is left untouched.

    Only ``nn.Sequential`` containers are trusted to run their children in registration order
    (a custom module's ``forward`` may not). A BatchNorm that is not directly after a
    Linear/Conv of matching width in an ``nn.Sequential`` — pre-activation nets (BatchNorm
    after a ReLU), a BatchNorm first in its container or the whole model, one inside a custom
    module, one without running statistics — raises :class:`NotApplicable` with a message
    "BatchNorm after … cannot be folded into a preceding layer".
    """
    model = copy.deepcopy(model)
    if isinstance(model, nn.modules.batchnorm._BatchNorm):
        raise NotApplicable("BatchNorm after the model input cannot be folded into a preceding layer: the model is a BatchNorm")
    for parent_name, parent in list(model.named_modules()):
        children = list(parent.named_children())
        for i, (child_name, child) in enumerate(children):
            if not isinstance(child, nn.modules.batchnorm._BatchNorm):
                continue
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if not isinstance(parent, nn.Sequential):
                raise NotApplicable(
                    f"BatchNorm after an unknown layer cannot be folded into a preceding layer: '{full}' is inside "
                    f"{_describe(parent_name, parent)}, not an nn.Sequential, so the layer it follows is not known"
                )
            if i == 0:
                raise NotApplicable(
                    f"BatchNorm after the start of {_describe(parent_name, parent)} cannot be folded into a "
                    f"preceding layer ('{full}' must directly follow a Linear or Conv layer)"
                )
            prev_name, prev = children[i - 1]
            prev_full = f"{parent_name}.{prev_name}" if parent_name else prev_name
            if not isinstance(prev, WEIGHT_LAYERS):
                raise NotApplicable(
                    f"BatchNorm after {_describe(prev_full, prev)} cannot be folded into a preceding layer "
                    f"('{full}' must directly follow a Linear or Conv layer)"
                )
            if child.running_mean is None or child.running_var is None:
                raise NotApplicable(
                    f"BatchNorm after {_describe(prev_full, prev)} cannot be folded into a preceding layer: "
                    f"'{full}' keeps no running statistics (it normalizes with batch statistics even in eval mode)"
                )
            if prev.weight.shape[0] != child.num_features:
                raise NotApplicable(
                    f"BatchNorm after {_describe(prev_full, prev)} cannot be folded into a preceding layer: "
                    f"'{full}' has {child.num_features} features but the layer has {prev.weight.shape[0]} outputs"
                )
            w = prev.weight.double()
            mean, var = child.running_mean.double(), child.running_var.double()
            gamma = child.weight.double() if isinstance(child.weight, torch.Tensor) else torch.ones_like(mean)
            beta = child.bias.double() if isinstance(child.bias, torch.Tensor) else torch.zeros_like(mean)
            scale = gamma / torch.sqrt(var + child.eps)
            bias = prev.bias.double() if prev.bias is not None else torch.zeros_like(mean)
            new_weight = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
            new_bias = (bias - mean) * scale + beta
            prev.weight.copy_(new_weight.to(prev.weight.dtype))
            if prev.bias is None:
                prev.bias = nn.Parameter(new_bias.to(prev.weight.dtype), requires_grad=prev.weight.requires_grad)
            else:
                prev.bias.copy_(new_bias.to(prev.bias.dtype))
            setattr(parent, child_name, nn.Identity())
    return model.eval()


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` contains a BatchNorm module (any ``_BatchNorm`` subclass)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def weight_layers(model: nn.Module, init_model: nn.Module) -> list[Layer]:
    """The Linear/Conv layers of ``model`` in ``named_modules()`` order, paired by name with ``init_model``'s."""
    init_modules = dict(init_model.named_modules())
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            init = init_modules[name]
            layers.append(
                Layer(
                    name=name,
                    kind=type(module).__name__,
                    weight=module.weight.detach().reshape(module.weight.shape[0], -1),
                    initial=init.weight.detach().reshape(init.weight.shape[0], -1),
                    bias=None if module.bias is None else module.bias.detach(),
                    initial_bias=None if init.bias is None else init.bias.detach(),
                )
            )
    return layers


def rebuild_model(run: Run, state: dict[str, torch.Tensor], input_shape, num_classes: int) -> nn.Module:
    """The run's architecture with ``state`` loaded, built without touching the global RNG."""
    spec = run.spec
    if spec.learner != "sgd":  # closed-form learners rebuild their own module (gentest.learners)
        from gentest.learners import rebuild_model as rebuild_learner

        return rebuild_learner(spec, state, input_shape, num_classes)
    model = build_model(
        spec.model,
        tuple(input_shape),
        num_classes,
        generator=torch.Generator(),  # placeholder init, overwritten by the state below
        dropout=spec.train.dropout,
        **thaw(spec.model_args),
    )
    model.load_state_dict(state)
    return model.eval()


class RunCache:
    """Per-run state shared by every measure's context: models, data and computed tensors."""

    def __init__(
        self,
        model: nn.Module,
        init_model: nn.Module,
        data: DataSplit,
        device: torch.device | str = "cpu",
        run: Run | None = None,
        key: str = "in-memory",
    ):
        """Build from models and data directly (tests, the pytest plugin); see :meth:`from_run`."""
        self.run = run
        self.key = run.key if run is not None else key
        self.device = torch.device(device)
        self.num_classes = data.num_classes
        self.input_shape = data.input_shape
        # The cache owns its copy of the data (``copy=True``: on the CPU ``.to`` would share the
        # caller's tensors), so a measure that writes into ctx.x_train cannot reach the dataset
        # that other runs are built from; ``_source`` restores the copy (see ``repair``).
        self._source = data
        self._born: dict[str, tuple[int, int]] = {}
        self._load_data()
        self.model = model.to(self.device).eval()
        self.init_model = init_model.to(self.device).eval()
        # What the models must still hold after every measure (checked and restored by the evaluation).
        self.pristine = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.pristine_init = {k: v.clone() for k, v in self.init_model.state_dict().items()}
        self._drop_computed()
        self._note_born()
        self.hits: dict[str, int] = {}  # how often each cached value was reused (tests read it)
        # Set by the evaluation when a run store is at hand: k -> the stored stability retrain.
        self.retrainer: Callable[[int], Run] | None = None
        self._retrained: dict[int, tuple[Run, nn.Module]] = {}

    def _load_data(self) -> None:
        data = self._source
        self.x_train, self.y_train = (t.to(self.device, copy=True) for t in (data.x_train, data.y_train))
        self.x_test, self.y_test = (t.to(self.device, copy=True) for t in (data.x_test, data.y_test))
        for name in ("ctx.x_train", "ctx.y_train", "ctx.x_test", "ctx.y_test"):
            self._born.pop(name, None)

    def _drop_computed(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}
        self._layers: list[Layer] | None = None
        self._folded: tuple[nn.Module, nn.Module] | NotApplicable | None = None
        self._folded_layers: list[Layer] | None = None

    def shared_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of this cache that measures share, by the name a person would use for
        it ("ctx.x_train", "ctx.logits('train')"). The models' weights are not listed: they are
        compared with :attr:`pristine` and :attr:`pristine_init` instead."""
        out = {"ctx.x_train": self.x_train, "ctx.y_train": self.y_train, "ctx.x_test": self.x_test, "ctx.y_test": self.y_test}
        for key, tensor in self._tensors.items():
            kind, _, split = key.partition("/")
            out[f"ctx.{kind}('{split}')" if split else f"ctx.{kind}"] = tensor
        folded = self._folded_layers if self._folded_layers is not self._layers else None
        for i, layer in enumerate(folded or ()):  # the folded network's own copies (with BatchNorm)
            for field in ("weight", "initial", "bias", "initial_bias"):
                if getattr(layer, field) is not None:
                    out[f"the folded ctx.layers()[{i}].{field}"] = getattr(layer, field)
        return out

    def _note_born(self) -> None:
        """Remember (identity, version counter) of every shared tensor not yet known: what it
        must still be after any measure (see :meth:`modified`)."""
        for name, tensor in self.shared_tensors().items():
            self._born.setdefault(name, (id(tensor), _version(tensor)))

    def modified(self) -> list[str]:
        """The names of the shared tensors changed in place (or replaced) since they were made.

        An in-place change through torch (``mul_``, ``copy_``, ``x[i] = …``, also under
        ``no_grad``) moves a tensor's version counter, which costs nothing to read. (Writes that
        bypass autograd's bookkeeping, through ``.data`` or ``.numpy()``, do not: measures must
        not do that.)"""
        now = {name: (id(t), _version(t)) for name, t in self.shared_tensors().items()}
        return [name for name, state in now.items() if self._born.get(name, state) != state]

    def repair(self) -> None:
        """Back to the pristine state after a measure broke it: the data copied again from its
        source, the models' weights restored, every computed value dropped (it may have been
        computed from the broken state), to be computed again when next asked for."""
        self._born = {}
        self._load_data()
        self.model.load_state_dict(self.pristine)
        self.init_model.load_state_dict(self.pristine_init)
        self._drop_computed()
        self._note_born()

    def retrained(self, k: int) -> tuple[Run, nn.Module]:
        """The stability retrain with ``k`` examples replaced (trained once, then cached)."""
        if k not in self._retrained:
            if self.retrainer is None:
                raise NotApplicable("stability needs a run store to retrain in (this context has none)")
            run = self.retrainer(k)
            model = rebuild_model(run, run.weights()["final"], self.input_shape, self.num_classes).to(self.device)
            self._retrained[k] = (run, model)
        return self._retrained[k]

    @classmethod
    def from_run(cls, run: Run, data: Randomized, device: torch.device) -> "RunCache":
        """The cache of a stored run, with its training data as trained."""
        weights = run.weights()
        split = data.data
        model = rebuild_model(run, weights["final"], split.input_shape, split.num_classes)
        init_model = rebuild_model(run, weights["initial"], split.input_shape, split.num_classes)
        return cls(model, init_model, split, device, run=run)

    def kernel(self):
        """The kernel learner's :class:`~gentest.learners.kernel.KernelSolution` (cached);
        NotApplicable on any other run."""
        from gentest.learners.kernel import KernelMachine

        if not isinstance(self.model, KernelMachine):
            raise NotApplicable(f"only kernel-interpolation runs have a kernel solution ({self._learner_name()} run)")
        if getattr(self, "_kernel_solution", None) is None:
            self._kernel_solution = self.model.solution(self.x_train)
        return self._kernel_solution

    def linear_solution(self):
        """The linear learner's :class:`~gentest.learners.linear.LinearSolution`; NotApplicable
        on any run that is not ``linear-minnorm`` or ``linear-sgd``."""
        from gentest.learners.linear import MINNORM, SGD, solution_of

        if self._learner_name() not in (MINNORM, SGD):
            raise NotApplicable(f"only linear-minnorm and linear-sgd runs have a linear solution ({self._learner_name()} run)")
        return solution_of(self.model)

    def _learner_name(self) -> str:
        return self.run.spec.learner if self.run is not None else "in-memory"

    def cached(self, key: str, compute) -> torch.Tensor:
        if key in self._tensors:
            self.hits[key] = self.hits.get(key, 0) + 1
        else:
            self._tensors[key] = compute()
            self._note_born()
        return self._tensors[key]

    def data(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            return self.x_train, self.y_train
        if split == "test":
            return self.x_test, self.y_test
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def logits(self, split: str) -> torch.Tensor:
        def compute() -> torch.Tensor:
            x, _ = self.data(split)
            with torch.no_grad():
                return torch.cat([self.model(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])

        return self.cached(f"logits/{split}", compute)

    def margins(self, split: str) -> torch.Tensor:
        def compute() -> torch.Tensor:
            logits = self.logits(split)
            _, y = self.data(split)
            true = logits.gather(1, y[:, None]).squeeze(1)
            others = logits.scatter(1, y[:, None], float("-inf"))
            return true - others.max(dim=1).values

        return self.cached(f"margins/{split}", compute)

    def layers(self) -> list[Layer]:
        """The Linear/Conv layers as they are in the model (BatchNorm not folded); views of its weights."""
        if self._layers is None:
            self._layers = weight_layers(self.model, self.init_model)
        return self._layers

    def has_batchnorm(self) -> bool:
        return has_batchnorm(self.model)

    def folded_models(self) -> tuple[nn.Module, nn.Module]:
        """(trained, initial) with every BatchNorm folded (see :func:`fold_batchnorm`); cached.

        Raises :class:`NotApplicable` when a BatchNorm cannot be folded. Without BatchNorm these
        are the cache's own models (not copies): never modify them.
        """
        if self._folded is None:
            if not self.has_batchnorm():
                self._folded = (self.model, self.init_model)
            else:
                try:
                    self._folded = (fold_batchnorm(self.model), fold_batchnorm(self.init_model))
                except NotApplicable as e:
                    self._folded = e
        if isinstance(self._folded, NotApplicable):
            raise NotApplicable(str(self._folded))
        return self._folded

    def folded_layers(self) -> list[Layer]:
        """The layers of the BatchNorm-folded network (trained and initial); :meth:`layers` itself
        when the model has no BatchNorm. Raises :class:`NotApplicable` when folding is impossible."""
        if self._folded_layers is None:
            if not self.has_batchnorm():
                self._folded_layers = self.layers()
            else:
                self._folded_layers = weight_layers(*self.folded_models())
                self._note_born()
        return self._folded_layers


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # an inference-mode tensor keeps no version counter
        return -1


def random_stream_seed(cache: "RunCache", name: str) -> int:
    """The seed of ``ctx.generator`` for a measure (or a shared search) called ``name``.

    Common random numbers (Zhang et al.'s twins are compared pair by pair): a stored run is
    seeded from its *pair* (``RunSpec.pair_key``: every setting and the seed, not the
    randomization), so the natural and the randomized twin of a pair draw the same subsample
    indices, probe vectors and noise directions, and the difference of their values carries
    less estimator noise. A cache without a stored run's spec is seeded from its key.
    """
    pair_key = getattr(getattr(cache.run, "spec", None), "pair_key", None)
    source = pair_key if pair_key is not None else cache.key
    return int(hashlib.sha256(f"{source}:{name}".encode()).hexdigest()[:15], 16)


class MeasureContext:
    """What one measure sees of one run. See the module docstring for the conventions."""

    def __init__(self, cache: RunCache, measure_name: str):
        self._cache = cache
        self.run = cache.run  # None for an in-memory cache
        self.spec = cache.run.spec if cache.run is not None else None
        self.metrics = cache.run.metrics if cache.run is not None else {}
        self.device = cache.device
        self.num_classes = cache.num_classes
        self.input_shape = cache.input_shape
        self.x_train, self.y_train = cache.x_train, cache.y_train
        self.x_test, self.y_test = cache.x_test, cache.y_test
        self.n_train = len(cache.y_train)
        self.loss_fn = nn.CrossEntropyLoss()
        self.model = copy.deepcopy(cache.model).eval()
        self.init_model = copy.deepcopy(cache.init_model).eval()
        self.generator = self.stream(measure_name)
        self.recorded: dict[str, object] = {}
        self._folded_layers: list[Layer] | None = None

    def stream(self, name: str) -> torch.Generator:
        """A fresh generator seeded from the run's pair and ``name`` (:func:`random_stream_seed`).

        ``ctx.generator`` is the stream named after the measure; a computation shared by several
        measures (a data subsample, a search cached with :meth:`shared`) takes a stream named
        after itself, so its draws do not depend on which measure asked first. Each call
        returns a new generator at the start of the stream: the same name gives the same numbers.
        Costs nothing beyond the generator (no model is copied)."""
        return torch.Generator().manual_seed(random_stream_seed(self._cache, name))

    def shared(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``compute()`` once per run, cached under ``key`` and shared by every measure of the run.

        The value must be a tensor that depends only on the run (its models and data) and on
        streams from :meth:`stream`, never on the asking measure; do not modify it in place
        (the evaluation checks). Use a key naming the computation (``"hessian/lanczos"``)."""
        return self._cache.cached(key, compute)

    def record(self, **facts: object) -> None:
        """Keep facts about this computation beside the value (e.g. ``hvps=120``)."""
        self.recorded.update(facts)

    def logits(self, split: str = "train") -> torch.Tensor:
        """Logits of the trained model on a split (cached; do not modify in place)."""
        return self._cache.logits(split)

    def margins(self, split: str = "train") -> torch.Tensor:
        """Output margins f_y − max_{j≠y} f_j per example, sign kept (cached)."""
        return self._cache.margins(split)

    def margin(self, split: str = "train", q: float = 0.1) -> float:
        """The q-quantile of the margins (Jiang et al. 2020 use the 10th percentile), sign kept."""
        return torch.quantile(self.margins(split).double(), q).item()

    def layers(self, fold_bn: bool = True) -> list[Layer]:
        """Weight matrices of the Linear/Conv layers, forward order, with initial values.

        ``fold_bn=True`` (default): of the network with every BatchNorm folded into the layer
        before it (see the module docstring; raises :class:`NotApplicable` when a BatchNorm
        cannot be folded). A model without BatchNorm gets the same tensors either way: views of
        the shared model's weights, so never modify them. For a model with BatchNorm the folded
        tensors are this context's own copies. ``fold_bn=False``: the raw layers.
        """
        if not fold_bn or not self._cache.has_batchnorm():
            return self._cache.layers()
        if self._folded_layers is None:
            self._folded_layers = [
                Layer(
                    name=layer.name,
                    kind=layer.kind,
                    weight=layer.weight.clone(),
                    initial=layer.initial.clone(),
                    bias=None if layer.bias is None else layer.bias.clone(),
                    initial_bias=None if layer.initial_bias is None else layer.initial_bias.clone(),
                )
                for layer in self._cache.folded_layers()
            ]
        return self._folded_layers

    def folded_model(self, init: bool = False) -> nn.Module:
        """A fresh copy (eval mode) of the trained — or with ``init=True`` the initial — model with
        every BatchNorm folded into the preceding layer and replaced by ``nn.Identity``; the
        model itself when it has no BatchNorm (a copy too). Raises :class:`NotApplicable` when
        a BatchNorm cannot be folded."""
        model, init_model = self._cache.folded_models()
        return copy.deepcopy(init_model if init else model).eval()

    def weights(self, init: bool = False) -> Iterator:
        """Per-layer weight matrices; with ``init=True``, pairs (trained, initial)."""
        for layer in self.layers():
            yield (layer.weight, layer.initial) if init else layer.weight

    def parameters(self, init: bool = False) -> torch.Tensor:
        """All parameters (weights, biases, normalization shifts) as one flat vector."""
        state = self._cache.init_model if init else self._cache.model
        return torch.cat([p.detach().reshape(-1) for p in state.parameters()])

    def data(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        return self._cache.data(split)

    def kernel(self):
        """The kernel learner's solution: ``alpha`` (n × C), training ``features`` (n × D),
        ``bandwidth``, ``ridge``, ``gram()`` = K and ``rkhs_norm()`` = √trace(αᵀKα) (a copy per
        measure; see :mod:`gentest.learners.kernel`). NotApplicable on other learners' runs."""
        sol = self._cache.kernel()
        return dataclasses.replace(sol, alpha=sol.alpha.clone(), features=sol.features.clone())

    def linear_solution(self):
        """The linear learner's weights ``weight`` (D × C, float64) and ``l2_norm()`` = ‖w‖₂
        (see :mod:`gentest.learners.linear`). NotApplicable on other learners' runs."""
        return self._cache.linear_solution()

    def retrained(self, k: int) -> tuple[Run, nn.Module]:
        """The run retrained with ``k`` training examples replaced by fresh draws, and its
        trained model (a copy): see :mod:`gentest.stability`. Raises NotApplicable without a
        run store. ``run.randomization["replaced_positions"]`` says which examples changed."""
        run, model = self._cache.retrained(k)
        return run, copy.deepcopy(model)
