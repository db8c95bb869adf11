"""One measure's value on one run: the unit the evaluation computes and the store caches.

A neutral module so that the store, the evaluation and the leaderboard can all speak of a
``MeasureValue`` without importing one another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class MeasureValue:
    """One measure on one run: a value, or the error that stands in its place."""

    run_key: str
    measure: str
    version: str
    value: float | None
    error: str | None
    seconds: float
    not_applicable: bool = False  # error holds the reason the measure does not apply
    extra: dict[str, Any] = field(default_factory=dict)  # what the measure recorded (ctx.record)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
