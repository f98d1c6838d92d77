"""Teacher: LoRA LLM cross-encoder trained on soft ESCI labels; scoring and reranking.

Public API: ``Teacher`` (load + score_pairs), ``reldistill.teacher.rerank.TeacherReranker``,
``reldistill.teacher.score.score_file``, ``reldistill.teacher.train.train_teacher``,
``tests.builders.tiny_teacher.build_tiny_teacher``, ``reldistill.teacher.plan.plan_teacher``.
Heavy libraries are imported lazily.
"""

from __future__ import annotations

from reldistill.exports import lazy_exports

_EXPORTS = {"Teacher": "reldistill.teacher.teacher"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
