"""Evaluation: every selected measure on every run, computing only what the store lacks.

Values are cached in the run store by (run key, measure name, measure version), errors
included: the same version of a measure on the same run gives the same result, so a finished
suite with one new measure costs only that measure. Bump a measure's ``version`` to recompute.

Each measure runs isolated (:func:`call_isolated`, with the guards of :mod:`gentest.isolation`).
These become a recorded error for that (run, measure) while every other value is still
computed, unchanged:

- an exception (its type and message are recorded), including ``SystemExit`` ("called
  sys.exit(3)") and a ``KeyboardInterrupt`` the measure raised itself;
- a value that is not a real scalar (a Python or NumPy number, or a one-element tensor);
- NaN or ±inf;
- running longer than the measure's ``timeout_s``: interrupted with ``SIGALRM`` when the call
  runs in the main thread of a POSIX process (by an exception that ``except Exception`` does
  not catch, raised again until the call gives up), and in any case a value returned after the
  deadline is refused;
- changing torch's global settings (default dtype or device, grad mode, anomaly detection,
  deterministic algorithms, thread count, matmul precision): restored, and the measure's error;
- changing in place a tensor it was given and that other measures share: the data
  (``ctx.x_train`` …), cached logits and margins, the folded layers; or the weights of the
  trained or the initial model (its own copy ``ctx.model``, or the shared ones behind
  ``ctx.layers()``). The shared state is restored (the data copied again, the weights
  reloaded, every cached tensor dropped and computed afresh when next asked for), so no later
  measure sees the change.

Only a call that broke none of these rules gives a value; a broken one stores its error and
no value. Torch's global random generators are seeded per (run, measure) before the call and
restored after it (see :mod:`gentest.isolation`).

A measure that raises :class:`~gentest.errors.NotApplicable` is recorded with its reason as
"does not apply" (scored ``n/a``), not as an error. What a measure puts in ``ctx.record(...)``
(e.g. the number of Hessian-vector products it used) is stored beside its value.

Ctrl-C is not swallowed: a SIGINT during a measure stops the evaluation (even if the measure
catches the KeyboardInterrupt), nothing is recorded for that call, and every value already
computed stays in the store. What is not isolated in-process: a measure that ends the process
itself (``os._exit``, a crash in native code) or never returns from native code; that takes a
supervising process.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import numpy as np
import torch

from gentest.context import MeasureContext, RunCache
from gentest.errors import GentestError, NotApplicable
from gentest.isolation import MeasureTimeout, TorchState, UserInterrupts, global_rngs, time_limit
from gentest.leaderboard import MeasureValue
from gentest.registry import Measure
from gentest.runner import DataCache, training_data
from gentest.store import Run, RunStore

__all__ = ["MeasureTimeout", "as_scalar", "call_isolated", "evaluate", "run_cache", "EvaluationProgress"]


class EvaluationProgress:
    """Hooks for the CLI's progress display."""

    def planned(self, total: int, missing: int) -> None: ...
    def value_started(self, run: Run, measure: Measure) -> None: ...
    def value_done(self, run: Run, value: MeasureValue) -> None: ...


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


def global_seed(run_key: str, measure_name: str) -> int:
    """The seed of the global generators during one call (see :mod:`gentest.isolation`)."""
    return int(hashlib.sha256(f"{run_key}:{measure_name}:global".encode()).hexdigest()[:15], 16)


def _describe_exception(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({'' if e.code is None else repr(e.code)})"
    if isinstance(e, KeyboardInterrupt):
        return "raised KeyboardInterrupt itself (no Ctrl-C was pressed)"
    message = str(e)
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def call_isolated(
    measure: Measure, cache: RunCache, pristine: dict[str, torch.Tensor] | None = None, *, rng_seed: int | None = None
) -> MeasureValue:
    """Run one measure on one run: a value, or an error (or the reason it does not apply).

    See the module docstring for what is isolated. ``pristine`` is accepted for old callers and
    ignored: the cache keeps its own pristine weights. ``rng_seed`` seeds the global generators
    for this call (default: derived from the run key and the measure name). Raises only
    ``KeyboardInterrupt`` (a Ctrl-C of the user during the call), and only what the guards
    themselves raise otherwise. Works in any thread; the time limit's alarm and the Ctrl-C rule
    need the main thread (elsewhere a late value is still refused).
    """
    ctx = MeasureContext(cache, measure.name)
    own_models = _versions(ctx.model), _versions(ctx.init_model)
    value, error, not_applicable = None, None, False
    state = TorchState.read()
    seed = global_seed(cache.key, measure.name) if rng_seed is None else rng_seed
    start = time.perf_counter()
    interrupts = UserInterrupts()
    try:
        with interrupts, global_rngs(seed):
            try:
                with time_limit(measure.timeout_s) as deadline:
                    raw = measure.fn(ctx)
                if deadline.expired():
                    raise MeasureTimeout()
                value = as_scalar(raw)
                if not math.isfinite(value):
                    value, error = None, f"returned {value}, not a finite number"
            except NotApplicable as e:
                error, not_applicable = str(e) or "does not apply to this run", True
            except MeasureTimeout:
                error = f"timed out after {measure.timeout_s:g} s"
            except TypeError as e:
                error = f"TypeError: {e}"
            except BaseException as e:  # isolation: any failure of a measure is recorded, not raised
                error = _describe_exception(e)
    finally:
        seconds = time.perf_counter() - start
        broken = _broken_rules(state, ctx, cache, own_models)
    interrupts.reraise()  # the user's Ctrl-C: nothing is recorded for this call
    if broken:
        value, not_applicable = None, False
        error = "; ".join(broken + ([f"then {error}"] if error else []))
    return MeasureValue(
        cache.key, measure.name, measure.version, value, error, seconds,
        not_applicable=not_applicable, extra=_json_ready(ctx.recorded),
    )


def _versions(model: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    # Through the state dict, which walks the module tree itself: a model that refuses
    # parameters() (the kernel learner's KernelMachine) is still watched.
    return tuple((id(t), t._version) for t in model.state_dict(keep_vars=True).values())


def _broken_rules(state: TorchState, ctx: MeasureContext, cache: RunCache, own_models) -> list[str]:
    """What the call changed that it must not have, in words; the shared state is restored.

    The shared models are compared value by value (a write through ``.data`` included). The
    measure's own copies only when a version counter moved (a measure may perturb its copy and
    put the weights back: that is no change), which saves two comparisons per call.
    """
    broken = state.changes(TorchState.read())
    state.restore()
    modified = [f"modified {name} in place" for name in cache.modified()]
    own_model = _versions(ctx.model) != own_models[0] and _changed(ctx.model, cache.pristine)
    own_init = _versions(ctx.init_model) != own_models[1] and _changed(ctx.init_model, cache.pristine_init)
    if own_model or _changed(cache.model, cache.pristine):
        modified.append("modified the model's weights (measures must leave ctx.model unchanged)")
    if own_init or _changed(cache.init_model, cache.pristine_init):
        modified.append("modified the initial model's weights (measures must leave ctx.init_model unchanged)")
    if modified:
        cache.repair()  # no later measure sees the change
    return broken + modified


def _json_ready(recorded: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in recorded.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if not isinstance(v, (int, float, str, bool, type(None), list, dict)):
            try:
                v = repr(v)
            except Exception:
                v = f"<{type(v).__name__}>"
        out[str(k)] = v
    return out


def _changed(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> bool:
    """Whether ``model``'s weights differ from ``reference`` (NaN equal to NaN: a run trained
    to NaN weights is not a mutation)."""
    state = model.state_dict()
    return any(k not in state or not _same(state[k], v) for k, v in reference.items())


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if torch.equal(a, b):
        return True
    return a.is_floating_point() and bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())


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
        for measure in todo[run.key]:
            progress.value_started(run, measure)
            result = call_isolated(measure, cache)
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
