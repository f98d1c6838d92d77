"""The one reranking interface every backend implements (teacher LLM, or anything else).

``rerank(query, candidates, top_k) -> list[RankedResult]``, best first. Candidates are
``(id, text)`` pairs. The search stack and the HTTP ``/rerank`` endpoint depend on this
protocol only, never on a concrete model class.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("rerank_deadline", default=None)


class RerankTimeout(Exception):
    """The deadline set by :func:`deadline` passed; a reranker raises it between batches."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within this block (in this thread), :func:`check_deadline` raises once ``seconds`` have passed."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check_deadline() -> None:
    """Raise :class:`RerankTimeout` when the current deadline has passed (rerankers call it between batches)."""
    d = _DEADLINE.get()
    if d is not None and time.monotonic() > d:
        raise RerankTimeout


@dataclasses.dataclass(frozen=True)
class RankedResult:
    id: str
    score: float  # higher is more relevant (teacher: sigmoid probability in [0, 1])
    rank: int  # 1-based position after reranking
    index: int  # position of the candidate in the input list
    p_exact: float | None = None  # calibrated P(Exact) when the reranker has a calibration (reldistill.calibration)
    p_exact_or_substitute: float | None = None  # calibrated P(Exact or Substitute)


@runtime_checkable
class Reranker(Protocol):
    name: str

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]], top_k: int | None = None) -> list[RankedResult]:
        """Score every candidate for ``query`` and return the best ``top_k`` (all if None), best first."""
        ...
