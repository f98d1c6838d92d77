"""The one reranking interface every backend implements (teacher LLM, or anything else).

``rerank(query, candidates, top_k) -> list[RankedResult]``, best first. Candidates are
``(id, text)`` pairs. The search stack and the HTTP ``/rerank`` endpoint depend on this
protocol only, never on a concrete model class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@dataclasses.dataclass(frozen=True)
class RankedResult:
    id: str
    score: float  # higher is more relevant (teacher: sigmoid probability in [0, 1])
    rank: int  # 1-based position after reranking
    index: int  # position of the candidate in the input list


@runtime_checkable
class Reranker(Protocol):
    name: str

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]], top_k: int | None = None) -> list[RankedResult]:
        """Score every candidate for ``query`` and return the best ``top_k`` (all if None), best first."""
        ...
