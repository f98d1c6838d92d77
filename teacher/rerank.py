"""`TeacherReranker`: the teacher behind the `reldistill.rerank.Reranker` interface."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from reldistill.rerank import RankedResult


class TeacherReranker:
    """Score every (query, candidate text) with the teacher; return the best ``top_k``, best first."""

    def __init__(self, teacher, batch_size: int | None = None):
        self.teacher = teacher
        self.batch_size = batch_size
        base = (teacher.manifest or {}).get("base_model") or teacher.cfg.model
        self.name = f"teacher:{os.path.basename(str(base).rstrip('/')) or base}"

    @classmethod
    def load(cls, directory: str | os.PathLike, dtype: str = "auto", batch_size: int | None = None) -> TeacherReranker:
        from reldistill.teacher.teacher import Teacher

        return cls(Teacher.load(directory, dtype=dtype), batch_size)

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]], top_k: int | None = None) -> list[RankedResult]:
        if not candidates:
            return []
        ids = [str(c[0]) for c in candidates]
        texts = [str(c[1]) for c in candidates]
        scores = self.teacher.score_pairs([query] * len(texts), texts, batch_size=self.batch_size)
        order = np.argsort(-scores, kind="stable")  # ties keep the input (first-stage) order
        if top_k is not None:
            order = order[: max(int(top_k), 0)]
        return [RankedResult(id=ids[i], score=float(scores[i]), rank=r + 1, index=int(i)) for r, i in enumerate(order)]
