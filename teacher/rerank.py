"""`TeacherReranker`: the teacher behind the `reldistill.rerank.Reranker` interface."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from reldistill.rerank import RankedResult, check_deadline
from reldistill.settings import Runtime
from reldistill.teacher.inputs import balanced_batches
from reldistill.teacher.teacher import Teacher


class TeacherReranker:
    """Score every (query, candidate text) with the teacher; return the best ``top_k``, best first.

    Candidates are scored one batch at a time (longest first, so batches hold similar lengths), and
    :func:`reldistill.rerank.check_deadline` is called between batches: a timed-out request stops.
    """

    def __init__(self, teacher, batch_size: int | None = None):
        self.teacher = teacher
        self.batch_size = batch_size
        base = (teacher.manifest or {}).get("base_model") or teacher.cfg.model
        self.name = f"teacher:{os.path.basename(str(base).rstrip('/')) or base}"

    @classmethod
    def load(cls, directory: str | os.PathLike, dtype: str = "auto", batch_size: int | None = None, *,
             runtime: Runtime | None = None) -> TeacherReranker:
        """The teacher artifact at ``directory`` as a reranker (``runtime``: its int8, prefix-KV and memo settings)."""
        return cls(Teacher.load(directory, dtype=dtype, runtime=runtime), batch_size)

    @property
    def calibration(self):
        """The teacher's calibration (:class:`reldistill.calibration.Calibration`), or None."""
        return getattr(self.teacher, "calibration", None)

    @property
    def max_length(self) -> int:
        """Tokens the teacher reads per (query, document) pair; longer documents are cut."""
        return int(self.teacher.cfg.max_length)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text alone (the work a document costs, before the pair is cut to ``max_length``).

        The ids are kept by the teacher's encoder, so scoring these texts next does not tokenize them again."""
        return [len(ids) for ids in self.teacher.encoder.text_ids(texts)]

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut after its first ``max_tokens`` tokens (at the character offset the tokenizer reports)."""
        enc = self.teacher.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        return [t if len(off) <= max_tokens else t[: off[max_tokens - 1][1]] for t, off in zip(texts, enc["offset_mapping"])]

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]], top_k: int | None = None) -> list[RankedResult]:
        if not candidates:
            return []
        ids = [str(c[0]) for c in candidates]
        texts = [str(c[1]) for c in candidates]
        scores = np.zeros(len(texts), dtype=np.float32)
        bs = self.batch_size or self.teacher.batch_size
        for chunk in balanced_batches(range(len(texts)), [len(t) for t in texts], bs):  # longest first, no runt batch
            check_deadline()
            scores[chunk] = self.teacher.score_pairs([query] * len(chunk), [texts[i] for i in chunk], batch_size=bs)
        order = np.argsort(-scores, kind="stable")  # ties keep the input (first-stage) order
        if top_k is not None:
            order = order[: max(int(top_k), 0)]
        cal = self.calibration
        probs = cal.probabilities(scores[order]) if cal is not None and len(order) else {}
        return [RankedResult(id=ids[i], score=float(scores[i]), rank=r + 1, index=int(i),
                             **{k: float(v[r]) for k, v in probs.items()}) for r, i in enumerate(order)]
