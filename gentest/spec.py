"""RunSpec: a frozen, hashable description of one training run.

A spec holds everything that determines a run's result: dataset, randomization, model,
training settings and seed. Its ``key`` is a hash of its canonical JSON form plus
``SCHEMA_VERSION``, so the run store can tell whether a run already exists. Two specs that
differ only in their randomization form a *pair* (same ``pair_key``): the natural twin and
its randomized twin share data order, initialization and every setting.

The device is deliberately not part of the spec: it is recorded with the run's metrics.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

# Bump when the meaning of a stored run changes (training loop, data handling, spec fields):
# every key changes and old runs are no longer reused.
SCHEMA_VERSION = 1

# Nested options (dataset_args, model_args) are kept as canonical JSON text: hashable,
# order-independent and exact to round-trip.
Frozen = str


def freeze(mapping: dict[str, Any]) -> Frozen:
    return json.dumps(mapping, sort_keys=True, separators=(",", ":"))


def thaw(frozen: Frozen) -> dict[str, Any]:
    return json.loads(frozen) if frozen else {}


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained; identical for the natural and randomized twins.

    The stopping rule follows the paper and Jiang et al. (2020): stop when the training set is
    fit (train accuracy >= ``stop_train_acc``) or the train cross-entropy falls below
    ``stop_train_loss``, whichever comes first, but after at most ``max_epochs`` epochs.
    ``stop_train_acc = None`` switches the accuracy rule off, for the cross-entropy rule of
    Jiang et al. and Dziugaite et al. alone (train every model to the same loss).
    """

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    lr_schedule: str = "constant"  # or "exponential": lr * lr_decay ** epoch (the paper's 0.95)
    lr_decay: float = 0.95
    batch_size: int = 128
    weight_decay: float = 0.0
    augment: bool = False  # images: random crop (4-pixel zero padding) and flip; sequences: random shift by up to 4
    dropout: float = 0.0
    stop_train_acc: float | None = 1.0  # None: no accuracy rule (a suite writes stop_train_acc = false)
    stop_train_loss: float | None = None
    max_epochs: int = 100


TRAIN_FIELDS = {f.name: f.default for f in fields(TrainSettings)}


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    model: str
    randomization: str = "none"
    p: float = 0.0
    seed: int = 0
    dataset_args: Frozen = "{}"
    model_args: Frozen = "{}"
    corrupt_test_labels: bool = False
    train: TrainSettings = TrainSettings()
    # Stability retraining: this many training examples replaced by fresh draws (0 = none).
    # Left out of the canonical form when 0, so ordinary runs keep their keys.
    replace_k: int = 0
    # The learner: "sgd" trains ``model`` with ``train`` (the default); any other kind
    # (gentest.learners: kernel interpolation, min-norm linear, the Theorem 1 construction)
    # fits in closed form with its options ``learner_args``. Left out of the canonical form
    # when "sgd", so ordinary runs keep their keys.
    learner: str = "sgd"
    learner_args: Frozen = "{}"
    # shuffled-pixels / random-pixels on colour images: permute pixel positions, keeping each
    # pixel's channel values together ("pixel", the default, the paper's pixels), or every value
    # on its own ("value"). Left out of the canonical form at the default, so keys hold.
    pixel_unit: str = "pixel"

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-ready form (also what the store writes as ``spec.json``)."""
        return {
            "dataset": self.dataset,
            "dataset_args": thaw(self.dataset_args),
            "model": self.model,
            "model_args": thaw(self.model_args),
            "randomization": self.randomization,
            "p": self.p,
            "corrupt_test_labels": self.corrupt_test_labels,
            "seed": self.seed,
            "train": asdict(self.train),
        } | ({"pixel_unit": self.pixel_unit} if self.pixel_unit != "pixel" else {}) | (
            {"replace_k": self.replace_k} if self.replace_k else {}
        ) | (
            {"learner": {"name": self.learner, **thaw(self.learner_args)}} if self.learner != "sgd" else {}
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        return cls(
            dataset=d["dataset"],
            dataset_args=freeze(d.get("dataset_args", {})),
            model=d["model"],
            model_args=freeze(d.get("model_args", {})),
            randomization=d["randomization"],
            p=float(d["p"]),
            corrupt_test_labels=bool(d.get("corrupt_test_labels", False)),
            seed=int(d["seed"]),
            train=TrainSettings(**d.get("train", {})),
            replace_k=int(d.get("replace_k", 0)),
            pixel_unit=str(d.get("pixel_unit", "pixel")),
            **_learner_fields(d.get("learner")),
        )

    @property
    def key(self) -> str:
        """Content hash: 16 hex digits of sha256(canonical JSON, schema version)."""
        return _digest({"schema": SCHEMA_VERSION, "spec": self.to_dict()})

    @property
    def pair_key(self) -> str:
        """Equal for specs that differ only in randomization (the natural/randomized twins)."""
        d = self.to_dict()
        for k in ("randomization", "p", "corrupt_test_labels", "pixel_unit"):
            d.pop(k, None)
        return _digest({"schema": SCHEMA_VERSION, "pair": d})

    @property
    def is_natural(self) -> bool:
        return self.randomization == "none"

    def seed_for(self, purpose: str) -> int:
        """A seed derived from ``seed`` for one purpose ("init", "order", "randomization", ...).

        Separate streams keep, say, the corruption mask from being the same draw as the initial
        weights, while every stream stays a function of the spec's seed alone. The natural and
        randomized twins share ``init`` and ``order``: same initial weights, same batch order.
        """
        return int(hashlib.sha256(f"{self.seed}:{purpose}".encode()).hexdigest()[:15], 16)

    @property
    def randomization_name(self) -> str:
        """The randomization as scoring and reports name it: the kind, with ``(values)`` when a
        pixel randomization permutes single values rather than whole pixels."""
        return self.randomization + ("(values)" if self.pixel_unit == "value" else "")

    def label(self) -> str:
        """A short human-readable name that tells runs apart, e.g.
        ``mnist1d/mlp hidden=[512,512]/labels(p=1)/seed0 #3f2a9c01``: the model's options,
        and the first 8 digits of the key, since runs can differ in settings a label leaves out
        (weight decay, the stopping rule)."""
        rnd = self.randomization_name + (f"(p={self.p:g})" if self.randomization == "labels" else "")
        retrain = f"/replace{self.replace_k}" if self.replace_k else ""
        options = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
                           for k, v in sorted(self.to_dict()["model_args"].items()))
        model = f"{self.model} {options}" if options else self.model
        return f"{self.dataset}/{model}/{rnd}/seed{self.seed}{retrain} #{self.key[:8]}"


def _learner_fields(learner: dict[str, Any] | None) -> dict[str, Any]:
    if not learner:
        return {}
    options = dict(learner)
    return {"learner": options.pop("name"), "learner_args": freeze(options)}


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
