"""The ``demo:`` recipe section: what `reldistill demo` sizes its CPU stages to (an optional section)."""

from __future__ import annotations

import dataclasses
import math

from reldistill.errors import UserError


@dataclasses.dataclass
class DemoConfig:
    """The recipe's ``demo:`` section: what the pipeline is sized to."""

    target_minutes: float = 15.0  # pipeline wall time; `make demo` adds ~2 min of set-up
    min_teacher_minutes: float = 1.0  # the teacher trains at least this long
    max_teacher_minutes: float = 8.0  # and at most this long
    min_student_steps: int = 25  # fewest training steps per student when the budget is tight
    max_student_steps: int = 110  # each student (distilled and human-labels-only)
    min_unlabeled_queries: int = 50  # the cap is distill.max_unlabeled_queries
    min_dev_rerank_queries: int = 10  # the cap is eval.dev_rerank_queries
    min_judged_queries: int = 30  # fully judged train queries the teacher labels; the cap is distill.max_judged_queries (else all)
    overhead_s: float = 30.0  # what the parts below leave out (BM25, FAISS, writes, process start): not proportional to work
    probe_seconds: float = 4.0  # student training steps are timed this long (at least one); the teacher scores one pass

    def __post_init__(self) -> None:
        if not self.target_minutes > 0 or not math.isfinite(self.target_minutes):
            raise UserError(f"demo.target_minutes must be a positive number of minutes, got {self.target_minutes!r}.")
        if not 0 <= self.min_teacher_minutes <= self.max_teacher_minutes:
            raise UserError("demo.min_teacher_minutes must be between 0 and demo.max_teacher_minutes.")
        if not 1 <= self.min_student_steps <= self.max_student_steps:
            raise UserError("demo.min_student_steps must be between 1 and demo.max_student_steps.")
        if self.min_unlabeled_queries < 0 or self.min_dev_rerank_queries < 0 or self.min_judged_queries < 0 or self.overhead_s < 0 or self.probe_seconds <= 0:
            raise UserError("demo: minimums and overhead_s must be >= 0 and probe_seconds > 0.")
