"""The one "time it and pick a runtime" mechanism of the student: batch encoding (``student.backend: auto``) and
one-query encoding (``student.query_backend: auto``) both measure each candidate runtime once on this machine and
keep the choice in a table under the runtime's cache folder, keyed by what the choice depends on (the rule, the CPU,
the student's weights and the candidates installed). A candidate that fails while measured is simply not chosen.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reldistill.artifacts import atomic_path
from reldistill.gguf_cache import cache_root
from reldistill.settings import Runtime
from reldistill.student.backend import cpu_signature

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """One kind of choice: its table file, the fields an entry names the winner and the timings by, and the log's name."""

    table: str  # file name under the cache folder
    winner_field: str
    timings_field: str
    what: str  # "student backend" | "query backend": for the log lines


BATCH = Choice("student-backend.json", "backend", "timings", "student backend")
QUERY = Choice("student-query-backend.json", "runtime", "query_p50_ms", "student query backend")


def choice_key(*parts: str) -> str:
    """The table key of a choice: a digest of what it depends on."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _read(path: Path) -> dict[str, Any]:
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return table if isinstance(table, dict) else {}


def measured_choice(kind: Choice, key: str, digest: str, candidates: list[str], measure: Callable[[str], Any],
                    best: Callable[[dict[str, Any]], str], runtime: Runtime | None = None) -> tuple[str, Any]:
    """(the winner, the timings of every candidate): read from the table where ``key`` was measured before, else
    measured now (``measure(candidate)``; ``best(timings)`` picks) and recorded."""
    path = cache_root(runtime) / kind.table
    cached = _read(path).get(key)
    if cached:
        return cached[kind.winner_field], cached.get(kind.timings_field)
    timings: dict[str, Any] = {}
    for c in candidates:
        try:
            timings[c] = measure(c)
        except Exception as e:  # noqa: BLE001 - a runtime that fails here is simply not chosen
            log.warning("%s %s unavailable (%s: %s)", kind.what, c, type(e).__name__, e)
    winner = best(timings)
    log.info("%s auto → %s (%s)", kind.what, winner, timings)
    table = _read(path)
    table[key] = {kind.winner_field: winner, kind.timings_field: timings, "cpu": cpu_signature(), "weights": digest,
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(table, indent=1), encoding="utf-8")
    return winner, timings
