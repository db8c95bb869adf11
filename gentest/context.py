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
  the matching initial matrix. Biases and normalization layers are not included, and
  BatchNorm is not folded into the preceding layer.
"""

from __future__ import annotations

import copy
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


@dataclass(frozen=True)
class Layer:
    """One Linear or Conv layer: its name in the model, trained and initial weight matrices."""

    name: str
    kind: str
    weight: torch.Tensor  # (out, in·k…)
    initial: torch.Tensor
    bias: torch.Tensor | None
    initial_bias: torch.Tensor | None


def rebuild_model(run: Run, state: dict[str, torch.Tensor], input_shape, num_classes: int) -> nn.Module:
    """The run's architecture with ``state`` loaded, built without touching the global RNG."""
    spec = run.spec
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
        self.x_train, self.y_train = data.x_train.to(self.device), data.y_train.to(self.device)
        self.x_test, self.y_test = data.x_test.to(self.device), data.y_test.to(self.device)
        self.model = model.to(self.device).eval()
        self.init_model = init_model.to(self.device).eval()
        self._tensors: dict[str, torch.Tensor] = {}
        self._layers: list[Layer] | None = None
        self.hits: dict[str, int] = {}  # how often each cached value was reused (tests read it)
        # Set by the evaluation when a run store is at hand: k -> the stored stability retrain.
        self.retrainer: Callable[[int], Run] | None = None
        self._retrained: dict[int, tuple[Run, nn.Module]] = {}

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

    def cached(self, key: str, compute) -> torch.Tensor:
        if key in self._tensors:
            self.hits[key] = self.hits.get(key, 0) + 1
        else:
            self._tensors[key] = compute()
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
        if self._layers is None:
            init_modules = dict(self.init_model.named_modules())
            self._layers = []
            for name, module in self.model.named_modules():
                if isinstance(module, WEIGHT_LAYERS):
                    init = init_modules[name]
                    self._layers.append(
                        Layer(
                            name=name,
                            kind=type(module).__name__,
                            weight=module.weight.detach().reshape(module.weight.shape[0], -1),
                            initial=init.weight.detach().reshape(init.weight.shape[0], -1),
                            bias=None if module.bias is None else module.bias.detach(),
                            initial_bias=None if init.bias is None else init.bias.detach(),
                        )
                    )
        return self._layers


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
        seed = int(hashlib.sha256(f"{cache.key}:{measure_name}".encode()).hexdigest()[:15], 16)
        self.generator = torch.Generator().manual_seed(seed)
        self.recorded: dict[str, object] = {}

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

    def layers(self) -> list[Layer]:
        """Weight matrices of the Linear/Conv layers, forward order, with initial values."""
        return self._cache.layers()

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

    def retrained(self, k: int) -> tuple[Run, nn.Module]:
        """The run retrained with ``k`` training examples replaced by fresh draws, and its
        trained model (a copy): see :mod:`gentest.stability`. Raises NotApplicable without a
        run store. ``run.randomization["replaced_positions"]`` says which examples changed."""
        run, model = self._cache.retrained(k)
        return run, copy.deepcopy(model)
