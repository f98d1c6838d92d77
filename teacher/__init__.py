"""Teacher: LoRA LLM cross-encoder trained on soft ESCI labels; scoring and reranking.

Public API: ``Teacher`` (load + score_pairs), ``reldistill.teacher.rerank.TeacherReranker``,
``reldistill.teacher.score.score_file``, ``reldistill.teacher.train.train_teacher``,
``tests.builders.tiny_teacher.build_tiny_teacher``, ``reldistill.teacher.plan.plan_teacher``.
Heavy libraries are imported lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Teacher"]


def __getattr__(name: str) -> Any:
    if name == "Teacher":
        from reldistill.teacher.teacher import Teacher

        return Teacher
    raise AttributeError(name)
