"""What an evaluation records beside its ranked lists: the systems left out (with the reason), notes for the
report's ``details``, and the seconds each step took."""

from __future__ import annotations

import dataclasses
import time
from typing import Any


@dataclasses.dataclass
class EvalRecord:
    """``absent``: system → why it was not scored; ``notes``: the report's ``details``; ``timings``: step → seconds.

    The steps fill them in the order they run, which is the order the report shows.
    """

    absent: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def timed(self, key: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, its wall time recorded under ``key`` (seconds, 2 decimals)."""
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.timings[key] = round(time.perf_counter() - t0, 2)
        return out

    def add_time(self, key: str, t0: float) -> None:
        """Record the seconds since ``t0`` (a ``time.perf_counter()``) under ``key``."""
        self.timings[key] = round(time.perf_counter() - t0, 2)
