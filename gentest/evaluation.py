"""Evaluation: every selected measure on every run, computing only what the store lacks.

Values are cached in the run store by (run key, measure name, measure version), errors
included: the same version of a measure on the same run gives the same result, so a finished
suite with one new measure costs only that measure. Bump a measure's ``version`` to recompute.

Each measure runs isolated. These become a recorded error for that (run, measure) while every
other value is still computed:

- an exception (its type and message are recorded);
- a value that is not a real scalar (a Python or NumPy number, or a one-element tensor);
- NaN or ±inf;
- running longer than the measure's ``timeout_s`` (enforced with ``SIGALRM`` when evaluation
  runs in the main thread of a POSIX process; elsewhere the limit is not enforced);
- changing the weights of the model it was given, or of the shared cached model.

A measure that raises :class:`~gentest.errors.NotApplicable` is recorded with its reason as
"does not apply" (scored ``n/a``), not as an error. What a measure puts in ``ctx.record(...)``
(e.g. the number of Hessian-vector products it used) is stored beside its value.

Ctrl-C is not swallowed: it stops the evaluation, and every value already computed stays in
the store.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from typing import Any, Iterator

import numpy as np
import torch

from gentest.context import MeasureContext, RunCache
from gentest.errors import GentestError, NotApplicable
from gentest.leaderboard import MeasureValue
from gentest.registry import Measure
from gentest.runner import DataCache, training_data
from gentest.store import Run, RunStore


class MeasureTimeout(Exception):
    pass


class EvaluationProgress:
    """Hooks for the CLI's progress display."""

    def planned(self, total: int, missing: int) -> None: ...
    def value_started(self, run: Run, measure: Measure) -> None: ...
    def value_done(self, run: Run, value: MeasureValue) -> None: ...


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise MeasureTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def as_scalar(raw: Any) -> float:
    """A measure's return value as a float; TypeError if it is not one real number."""
    if isinstance(raw, bool):
        raise TypeError("returned a bool, not a number")
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return float(raw)
    if isinstance(raw, torch.Tensor) and raw.numel() == 1 and not raw.is_complex():
        return float(raw.detach().cpu().reshape(()).item())
    if isinstance(raw, np.ndarray) and raw.size == 1 and np.isrealobj(raw):
        return float(raw.reshape(()))
    shape = f" of shape {tuple(raw.shape)}" if hasattr(raw, "shape") else ""
    raise TypeError(f"returned {type(raw).__name__}{shape}, not a scalar")


def call_isolated(measure: Measure, cache: RunCache, pristine: dict[str, torch.Tensor]) -> MeasureValue:
    """Run one measure on one run: a value, or an error (or the reason it does not apply)."""
    ctx = MeasureContext(cache, measure.name)
    value, error, not_applicable = None, None, False
    start = time.perf_counter()
    try:
        with time_limit(measure.timeout_s):
            raw = measure.fn(ctx)
        value = as_scalar(raw)
        if not math.isfinite(value):
            value, error = None, f"returned {value}, not a finite number"
    except NotApplicable as e:
        error, not_applicable = str(e) or "does not apply to this run", True
    except MeasureTimeout:
        error = f"timed out after {measure.timeout_s:g} s"
    except TypeError as e:
        error = f"TypeError: {e}"
    except Exception as e:  # isolation: any failure of a measure is recorded, not raised
        error = f"{type(e).__name__}: {e}"
    if _changed(ctx.model, pristine) or _changed(cache.model, pristine):
        value, error = None, "modified the model's weights (measures must leave ctx.model unchanged)"
        not_applicable = False
        cache.model.load_state_dict(pristine)  # repair the shared copy for the next measure
    return MeasureValue(
        cache.key, measure.name, measure.version, value, error, time.perf_counter() - start,
        not_applicable=not_applicable, extra=_json_ready(ctx.recorded),
    )


def _json_ready(recorded: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in recorded.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        out[str(k)] = v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else repr(v)
    return out


def _changed(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return any(not torch.equal(state[k], v) for k, v in reference.items())


def evaluate(
    runs: list[Run],
    measures: list[Measure],
    store: RunStore,
    device: torch.device,
    data: DataCache | None = None,
    progress: EvaluationProgress | None = None,
) -> list[MeasureValue]:
    """Every measure on every run, from the store where cached; new values are stored."""
    data = data or DataCache()
    progress = progress or EvaluationProgress()
    todo = {run.key: [m for m in measures if store.get_value(run.key, m.name, m.version) is None] for run in runs}
    progress.planned(len(runs) * len(measures), sum(len(v) for v in todo.values()))
    for run in runs:
        if not todo[run.key]:
            continue
        cache = run_cache(run, data, device, store)
        pristine = {k: v.clone() for k, v in cache.model.state_dict().items()}
        for measure in todo[run.key]:
            progress.value_started(run, measure)
            result = call_isolated(measure, cache, pristine)
            store.put_value(result)
            progress.value_done(run, result)
    return [store.get_value(run.key, m.name, m.version) for run in runs for m in measures]


def _retrainer(run: Run, store: RunStore, device: torch.device, data: DataCache):
    """Stability retrains are ordinary runs of the store: trained once, then reused."""
    from gentest.runner import train_missing
    from gentest.stability import retrain_spec

    def retrain(k: int) -> Run:
        return train_missing([retrain_spec(run.spec, k)], store, device, data)[0]

    return retrain


def run_cache(run: Run, data: DataCache, device: torch.device, store: RunStore | None = None) -> RunCache:
    """The shared cache for measuring ``run``: its training data regenerated (and checked bit
    for bit against the stored fingerprint), its models rebuilt, and, given a store, the
    stability retrainer."""
    randomized = training_data(run.spec, data)
    expected = run.randomization.get("train_inputs_sha256")
    if expected is not None and expected != randomized.record["train_inputs_sha256"]:
        # The data a run was trained on no longer regenerates exactly (a changed dataset
        # version, say): measuring it on other data would be silently wrong.
        raise GentestError(
            f"run {run.key} ({run.spec.label()}): its training data no longer regenerates bit for bit; "
            "retrain it in a fresh --store"
        )
    cache = RunCache.from_run(run, randomized, device)
    if store is not None:
        cache.retrainer = _retrainer(run, store, device, data)
    return cache
