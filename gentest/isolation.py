"""Guards around one call of a measure's code, in whatever process runs it.

A measure is someone's unfinished code running inside gentest. These guards make what it does
to the process around it either harmless or the measure's own recorded error (see
:func:`gentest.evaluation.call_isolated`, which combines them):

- :func:`time_limit`: a time limit the measure cannot swallow. The limit raises
  :class:`MeasureTimeout`, a ``BaseException`` (an ``except Exception`` does not catch it), and
  raises it again every :data:`REPEAT_S` seconds until the call returns; whatever the call then
  returns after its deadline is refused anyway. The alarm needs ``SIGALRM`` and the main thread
  of a POSIX process; elsewhere only the after-the-fact check holds (a process supervisor must
  kill a call that never returns).
- :class:`UserInterrupts`: tells a Ctrl-C of the person at the terminal from a
  ``KeyboardInterrupt`` that the measure raised itself. The rule: **a KeyboardInterrupt is the
  user's exactly when SIGINT reached the process during the call.** While the call runs (main
  thread only) a SIGINT handler notes the signal and then does what the previous handler does
  (Python's default raises KeyboardInterrupt in the measure); afterwards the caller re-raises
  it, even if the measure caught it, and records nothing. A KeyboardInterrupt with no SIGINT
  behind it (raised by the measure's code, or any KeyboardInterrupt in a thread other than the
  main one, where Python never delivers SIGINT) is the measure's error. A process that
  ignores SIGINT (``SIG_IGN``, e.g. a worker whose parent handles Ctrl-C) keeps ignoring it.
- :class:`TorchState`: torch's process-wide settings that change the numbers of every later
  computation — default dtype and device, grad mode, anomaly detection, deterministic
  algorithms, the number of threads, float32 matmul precision and the cuDNN/TF32 flags. They
  are read before the call, compared after it (a change is the measure's error: "changed
  torch's default dtype to float64") and restored in any case.
- :func:`global_rngs`: torch's global generators (CPU, and CUDA once initialized), NumPy's and
  Python's ``random`` are seeded before the call from a seed the caller derives from the run
  and the measure, and the caller's states are restored afterwards, silently. Measures should
  draw from ``ctx.generator``; one that uses a global generator still gets reproducible values
  and cannot disturb the draws of anything after it. (``gentest check`` seeds the two calls
  of its determinism rule differently, so global draws are still caught there.)
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Iterator

import numpy as np
import torch

REPEAT_S = 0.5  # after the deadline, MeasureTimeout is raised again this often until the call returns


class MeasureTimeout(BaseException):
    """A measure ran past its time limit. A BaseException, so ``except Exception`` cannot swallow it."""


class Deadline:
    """When a call must end; ``expired()`` after it returns decides whether its value counts."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.limited = 0 < seconds < float("inf")
        self.end = time.perf_counter() + seconds if self.limited else float("inf")

    def expired(self) -> bool:
        return time.perf_counter() > self.end


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[Deadline]:
    """Raise :class:`MeasureTimeout` in the block after ``seconds`` (and every REPEAT_S after)."""
    deadline = Deadline(seconds)
    if not deadline.limited or not hasattr(signal, "setitimer") or not _in_main_thread():
        yield deadline
        return

    def expire(signum: int, frame: Any) -> None:
        # Re-arm first: a measure that catches this one gets another shortly.
        signal.setitimer(signal.ITIMER_REAL, REPEAT_S)
        raise MeasureTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield deadline
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class UserInterrupts:
    """Context manager noting a SIGINT delivered during the block (see the module docstring).

    After the block, :meth:`reraise` raises the interrupt the user asked for, if any.
    """

    def __init__(self) -> None:
        self.signalled = False
        self.raised: BaseException | None = None
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "UserInterrupts":
        if not _in_main_thread():
            return self
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, signal.SIG_DFL, None):
            return self  # ignored: stays ignored; default: the process ends, nothing to tell apart
        self._previous = previous

        def on_sigint(signum: int, frame: Any) -> None:
            self.signalled = True
            try:
                previous(signum, frame)  # Python's default_int_handler raises KeyboardInterrupt
            except BaseException as e:
                self.raised = e
                raise

        signal.signal(signal.SIGINT, on_sigint)
        self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def reraise(self) -> None:
        """Raise what the SIGINT handler raised during the block (a KeyboardInterrupt), if anything."""
        if self.raised is not None:
            raise self.raised


@dataclass(frozen=True)
class TorchState:
    """torch's process-wide settings that change later results (see the module docstring)."""

    default_dtype: torch.dtype
    default_device: str
    grad_enabled: bool
    anomaly_enabled: bool
    anomaly_check_nan: bool
    deterministic_algorithms: bool
    deterministic_warn_only: bool
    num_threads: int
    float32_matmul_precision: str
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    cudnn_allow_tf32: bool
    cuda_matmul_allow_tf32: bool

    @classmethod
    def read(cls) -> "TorchState":
        return cls(
            default_dtype=torch.get_default_dtype(),
            default_device=str(torch.get_default_device()) if hasattr(torch, "get_default_device") else "cpu",
            grad_enabled=torch.is_grad_enabled(),
            anomaly_enabled=torch.is_anomaly_enabled(),
            anomaly_check_nan=torch.is_anomaly_check_nan_enabled(),
            deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            num_threads=torch.get_num_threads(),
            float32_matmul_precision=torch.get_float32_matmul_precision(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            cudnn_deterministic=torch.backends.cudnn.deterministic,
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            cuda_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )

    def restore(self) -> None:
        """Make torch's settings these again (whatever changed them)."""
        now = TorchState.read()
        if now == self:
            return
        if now.default_dtype != self.default_dtype:
            torch.set_default_dtype(self.default_dtype)
        if now.default_device != self.default_device and hasattr(torch, "set_default_device"):
            torch.set_default_device(None if self.default_device == "cpu" else self.default_device)
        torch.set_grad_enabled(self.grad_enabled)
        torch.set_anomaly_enabled(self.anomaly_enabled, self.anomaly_check_nan)
        torch.use_deterministic_algorithms(self.deterministic_algorithms, warn_only=self.deterministic_warn_only)
        if now.num_threads != self.num_threads:
            torch.set_num_threads(self.num_threads)
        torch.set_float32_matmul_precision(self.float32_matmul_precision)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.allow_tf32 = self.cudnn_allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.cuda_matmul_allow_tf32

    def changes(self, after: "TorchState") -> list[str]:
        """What differs in ``after``, each as "changed torch's <setting> to <value>"."""
        words = {
            "default_dtype": "default dtype",
            "default_device": "default device",
            "grad_enabled": "grad mode (torch.is_grad_enabled())",
            "anomaly_enabled": "anomaly detection",
            "anomaly_check_nan": "anomaly detection's NaN check",
            "deterministic_algorithms": "deterministic-algorithms flag",
            "deterministic_warn_only": "deterministic-algorithms warn_only flag",
            "num_threads": "number of threads",
            "float32_matmul_precision": "float32 matmul precision",
            "cudnn_benchmark": "cudnn.benchmark flag",
            "cudnn_deterministic": "cudnn.deterministic flag",
            "cudnn_allow_tf32": "cudnn.allow_tf32 flag",
            "cuda_matmul_allow_tf32": "cuda.matmul.allow_tf32 flag",
        }
        out = []
        for f in fields(self):
            before, now = getattr(self, f.name), getattr(after, f.name)
            if before != now:
                shown = str(now).removeprefix("torch.") if isinstance(now, torch.dtype) else now
                out.append(f"changed torch's {words[f.name]} to {shown}")
        return out


@contextlib.contextmanager
def global_rngs(seed: int) -> Iterator[None]:
    """Seed the global generators (torch CPU and initialized CUDA, NumPy, ``random``) with
    ``seed`` for the block; restore the caller's states afterwards."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    np_state, py_state = np.random.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)
    if cuda is not None:  # not torch.manual_seed: that would queue a seed for CUDA's later start
        torch.cuda.manual_seed_all(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(np_state)
        random.setstate(py_state)
