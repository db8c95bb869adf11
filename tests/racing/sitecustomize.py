"""A start-line for racing tests: put this folder on PYTHONPATH and set GENTEST_RACE_DIR,
GENTEST_RACE_N and (per racing command) GENTEST_RACER, and every Python process of the racers
(commands and their pool workers alike) wraps gentest's training so that

- each training is logged to ``$GENTEST_RACE_DIR/log`` as ``racer pid start|end key time``;
- a racer's first training waits until ``GENTEST_RACE_N`` racers are inside a training at
  once (each holding its run's lock), so the racers provably overlap and each does work.

Python imports ``sitecustomize`` at start-up, spawned worker processes included.
"""

import os

if os.environ.get("GENTEST_RACE_DIR") and os.environ.get("GENTEST_RACER"):
    import time
    from pathlib import Path

    import gentest.runner

    _dir, _racer, _n = Path(os.environ["GENTEST_RACE_DIR"]), os.environ["GENTEST_RACER"], int(os.environ["GENTEST_RACE_N"])
    _real_train = gentest.runner.train

    def _log(event: str, key: str) -> None:
        with open(_dir / "log", "a") as f:  # one short append per line: lines never interleave
            f.write(f"{_racer} {os.getpid()} {event} {key} {time.time():.6f}\n")

    def _train(spec, *args, **kwargs):
        _log("start", spec.key)
        ready = _dir / f"ready.{_racer}"
        if not ready.exists():
            ready.touch()
            deadline = time.monotonic() + 300  # a hang guard: the test then fails on the log
            while len(list(_dir.glob("ready.*"))) < _n and time.monotonic() < deadline:
                time.sleep(0.01)
        try:
            return _real_train(spec, *args, **kwargs)
        finally:
            _log("end", spec.key)

    gentest.runner.train = _train
