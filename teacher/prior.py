"""A teacher's bi-encoder prior: the LLM's relevance logit blended with a sentence-transformers cosine.

    score = w · (llm − μ_llm) / σ_llm + (1 − w) · (cos − μ_cos) / σ_cos

Both terms are standardised with statistics of the dev pairs, so the blend is pointwise (shards, rerank
and single pairs give the same score) and ``w`` weighs two signals on one scale. ``w`` is chosen on
dev nDCG@10 at the end of teacher training from ``teacher.prior_weights`` (``w = 1`` is the LLM alone,
so the prior is kept only where dev says it ranks better). Fusing a cross-encoder with a bi-encoder is
the score-ensemble teacher of cross-architecture distillation (Hofstätter et al., 2020); the weight,
the statistics and the dev table are in the teacher manifest's ``prior``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from reldistill.errors import UserError
from reldistill.settings import Runtime
from reldistill.student.encode import encode_documents, encode_queries, load_student
from reldistill.teacher.metrics import mean_ndcg


@functools.lru_cache(maxsize=2)
def _student(name: str, runtime: Runtime):
    return load_student(name, runtime=runtime)


def cosines(student: str, queries: Sequence[str], texts: Sequence[str], runtime: Runtime | None = None) -> np.ndarray:
    """Cosine of each (query, text) pair under the sentence-transformers ``student`` (each unique string encoded once;
    the student loaded on ``runtime``'s backend)."""
    if not len(queries):
        return np.zeros(0, dtype=np.float64)
    model = _student(student, runtime or Runtime())
    uq, qi = np.unique(np.asarray(queries, dtype=object), return_inverse=True)
    ut, ti = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    qv = encode_queries(model, uq.tolist())
    tv = encode_documents(model, ut.tolist())
    return np.einsum("ij,ij->i", qv[qi], tv[ti]).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class Prior:
    """The blend recorded in a teacher manifest (``prior``); ``apply`` turns raw LLM logits into blended scores."""

    student: str
    weight: float
    llm_mean: float
    llm_std: float
    cos_mean: float
    cos_std: float

    @classmethod
    def from_manifest(cls, block: dict[str, Any] | None) -> Prior | None:
        if not block or block.get("weight") is None or float(block["weight"]) >= 1.0:
            return None
        try:
            return cls(**{f.name: block[f.name] for f in dataclasses.fields(cls)})
        except KeyError as e:
            raise UserError(f"the teacher manifest's prior lacks {e.args[0]!r} — retrain the teacher.") from None

    def blend(self, llm: np.ndarray, cos: np.ndarray) -> np.ndarray:
        z_llm = (np.asarray(llm, dtype=np.float64) - self.llm_mean) / self.llm_std
        z_cos = (np.asarray(cos, dtype=np.float64) - self.cos_mean) / self.cos_std
        return self.weight * z_llm + (1.0 - self.weight) * z_cos

    def apply(self, queries: Sequence[str], texts: Sequence[str], llm: np.ndarray,
              runtime: Runtime | None = None) -> np.ndarray:
        return self.blend(llm, cosines(self.student, queries, texts, runtime)).astype(np.float32)


def _std(x: np.ndarray) -> float:
    s = float(np.std(x))
    return s if s > 1e-9 else 1.0


def fit_prior(dev: pd.DataFrame, llm: np.ndarray, student: str, weights: Sequence[float], k: int = 10, *,
              runtime: Runtime | None = None) -> dict[str, Any]:
    """Choose the LLM weight on ``dev`` (whole queries with ``gain``): standardise both scores on these pairs,
    score every ``w`` in ``weights`` by mean nDCG@k, keep the best (ties: the larger w, i.e. more LLM).

    Returns the manifest block: the chosen :class:`Prior` fields plus ``dev_ndcg10`` per weight and ``dev_queries``.
    """
    llm = np.asarray(llm, dtype=np.float64)
    cos = cosines(student, dev["query"].astype(str).tolist(), dev["text"].astype(str).tolist(), runtime)
    stats = {"llm_mean": float(llm.mean()), "llm_std": _std(llm), "cos_mean": float(cos.mean()), "cos_std": _std(cos)}
    table, n = {}, 0
    for w in sorted({float(x) for x in weights}):
        p = Prior(student=student, weight=w, **stats)
        table[w], n = mean_ndcg(dev.assign(teacher_score=p.blend(llm, cos)), k=k)
    best = max(table, key=lambda w: (table[w], w))
    return {"student": student, "weight": best, **stats, "dev_queries": n,
            "dev_ndcg10": {f"{w:g}": round(v, 4) for w, v in table.items()}}
