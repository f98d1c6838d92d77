"""Teacher probabilities for eval, cached by (query text, product text) per teacher artifact and dtype.

Task 1 and every rerank configuration eval compares ask for overlapping pairs; each pair is scored
once, in batches, and a second eval of the same run scores none. :func:`cached_reranker` gives the
served reranker (`TeacherReranker`) over this cache, so eval's rerank orders products exactly as
`reldistill search --mode rerank` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reldistill.artifacts import MANIFEST, read_json, write_parquet
from reldistill.calibration import load_calibration
from reldistill.settings import Runtime
from reldistill.teacher.rerank import TeacherReranker
from reldistill.teacher.teacher import Teacher
from reldistill.teacher.int8 import cpu_key, int8_mode


def pair_key(query: str, text: str) -> str:
    """The cache key of one (query text, product text) pair."""
    return hashlib.sha256(f"{query}\0{text}".encode()).hexdigest()[:24]


class TeacherScoreCache:
    """``scores(queries, texts)`` → teacher probabilities; misses are scored in batches and saved."""

    def __init__(self, teacher_dir: Path, cache_dir: Path, dtype: str = "auto", batch_size: int = 32, prior: bool = True,
                 *, runtime: Runtime | None = None):
        """``prior=False``: the LLM's scores alone (a teacher with a prior blends them with a bi-encoder's);
        ``runtime``: the teacher's int8, prefix-KV and memo settings."""
        self.teacher_dir, self.dtype, self.batch_size, self.prior = Path(teacher_dir), dtype, batch_size, prior
        self.runtime = runtime or Runtime()
        int8 = f"int8-{int8_mode(self.runtime)}:{cpu_key(self.runtime)}" + ("" if prior else ":llm-alone")  # int8 / LLM-alone kept apart
        digest = hashlib.sha256(((self.teacher_dir / MANIFEST).read_text(encoding="utf-8") + "\0" + dtype + "\0" + int8).encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"teacher-scores-{digest}.parquet"
        self.known: dict[str, float] = {}
        if self.path.is_file():
            df = pd.read_parquet(self.path)
            self.known = dict(zip(df["key"], df["score"].astype(float)))
        self.loaded_from_cache = len(self.known)
        self.hits = self.scored = 0
        self._teacher = None

    @property
    def teacher(self):
        if self._teacher is None:
            self._teacher = Teacher.load(self.teacher_dir, dtype=self.dtype, runtime=self.runtime)
        return self._teacher

    def scores(self, queries: Sequence[str], texts: Sequence[str], progress: bool = False) -> np.ndarray:
        keys = [pair_key(q, t) for q, t in zip(queries, texts)]
        todo = {k: i for i, k in enumerate(keys) if k not in self.known}
        self.hits += len(keys) - len(todo)
        if todo:
            idx = list(todo.values())
            new = self.teacher.score_pairs([queries[i] for i in idx], [texts[i] for i in idx],
                                           batch_size=self.batch_size, progress=progress, prior=self.prior)
            self.known.update(zip(todo, map(float, new)))
            self.scored += len(todo)
            write_parquet(self.path, pd.DataFrame({"key": list(self.known), "score": list(self.known.values())}))
        return np.array([self.known[k] for k in keys], dtype=np.float64)


class _CachedTeacher:
    """The teacher as `TeacherReranker` sees it, with ``score_pairs`` answered from a :class:`TeacherScoreCache`."""

    def __init__(self, cache: TeacherScoreCache):
        self._cache = cache
        self.manifest = read_json(cache.teacher_dir / MANIFEST)
        self.batch_size = cache.batch_size  # what TeacherReranker batches by; scoring itself batches in the cache
        self.calibration = load_calibration(cache.teacher_dir)

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], batch_size: int | None = None, **_: Any) -> np.ndarray:
        return self._cache.scores(list(queries), list(texts))

    def __getattr__(self, name: str):  # cfg and the rest: the real teacher (loaded on first use)
        return getattr(self._cache.teacher, name)


def cached_reranker(cache: TeacherScoreCache):
    """The served `TeacherReranker`, scoring through ``cache``."""
    return TeacherReranker(_CachedTeacher(cache))
