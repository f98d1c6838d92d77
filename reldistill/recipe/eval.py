"""Eval and bench settings (the ``eval:`` and ``bench:`` sections of a recipe)."""

from __future__ import annotations

import dataclasses

from reldistill.errors import UserError
from reldistill.precision import parse_dtype

STAT_TESTS = ("student", "fisher")
SYSTEMS = ("bm25", "dense-base", "dense-human", "dense-distilled", "hybrid-base", "hybrid-distilled",
           "hybrid+rerank", "teacher")


@dataclasses.dataclass
class EvalConfig:
    """How systems are compared.

    Graded metrics (nDCG) use the ESCI gains of ``data.gains`` linearly (Järvelin & Kekäläinen DCG:
    sum gain / log2(rank + 1)), as the official ESCI Task-1 metric does. Binary metrics (Recall, MRR,
    MAP) count a product as relevant when its label is one of ``relevant_labels`` (default: Exact only).
    """

    split: str = dataclasses.field(default="test", metadata={"help": "Split to evaluate (dev is carved from train)."})
    depth: int = 100  # full-catalog results per query (Recall@depth, MAP over this depth)
    ndcg_k: int = 10  # the k of nDCG@k
    mrr_k: int = 10  # the k of MRR@k
    relevant_labels: list[str] = dataclasses.field(default_factory=lambda: ["E"])  # labels counted as relevant by the binary metrics (Recall, MRR, MAP)
    base_student: str = "minilm-l6"  # used when the distilled student's manifest names no base
    stat_test: str = "student"  # paired two-sided t-test ("student") or Fisher randomization ("fisher")
    max_p: float = 0.05  # significance level of the paired tests
    permutations: int = 1000  # for the Fisher test
    batch_size: int = 64  # student encoding batch size
    teacher_dtype: str = "auto"  # teacher weights dtype for scoring: auto | float32 | bfloat16
    teacher_batch: int = 32  # pairs per teacher forward
    max_queries: int | None = dataclasses.field(default=None, metadata={"help": "Only the first N queries of the split (smoke runs)."})
    systems: list[str] | None = dataclasses.field(default=None, metadata={
        "help": "Evaluate only these systems, e.g. bm25,dense-base; none: every system the run has."})
    # choosing the served configuration on dev (never on test): search: settings are the served ones
    choose_on: str = "dev"  # dev: choose the served configuration there; none: keep serving.json / search: as they are
    weight_grid: list[float] = dataclasses.field(default_factory=lambda: [0.5, 1.0, 2.0])  # dense weight, bm25 = 1
    rerank_k_grid: list[int] = dataclasses.field(default_factory=lambda: [10, 20])  # rerank depths compared on dev
    # search.rerank_weight values compared on dev (null: the teacher's order alone; w: RRF blend with the first stage)
    rerank_weight_grid: list[float | None] = dataclasses.field(default_factory=lambda: [None, 1.0, 0.5, 0.25])
    dev_rerank_queries: int = 100  # dev queries (seeded, whole queries) the rerank candidates are scored on
    min_gain: float = 0.005  # a system with more parts must beat the simpler choice by this much dev nDCG@10 ...
    # ... and be significant (paired t-test, p < max_p), so noise on a few hundred dev queries picks nothing

    def __post_init__(self) -> None:
        self.teacher_dtype = parse_dtype(self.teacher_dtype, "eval.teacher_dtype")
        for name in ("depth", "ndcg_k", "mrr_k", "batch_size", "permutations", "teacher_batch", "dev_rerank_queries"):
            if getattr(self, name) < 1:
                raise UserError(f"eval.{name} must be at least 1, got {getattr(self, name)}.")
        if not self.weight_grid or any(w <= 0 for w in self.weight_grid):
            raise UserError(f"eval.weight_grid must list positive dense weights (bm25 weight 1), got {self.weight_grid}.")
        if any(k < 1 or k > self.depth for k in self.rerank_k_grid):
            raise UserError(f"eval.rerank_k_grid values must be in [1, eval.depth={self.depth}], got {self.rerank_k_grid}.")
        if not self.rerank_weight_grid or any(w is not None and not w > 0 for w in self.rerank_weight_grid):
            raise UserError(f"eval.rerank_weight_grid must list positive weights or null, got {self.rerank_weight_grid}.")
        if self.choose_on not in ("dev", "none"):
            raise UserError(f"eval.choose_on must be dev (the split carved from train) or none, got {self.choose_on!r} — "
                            "the served configuration is never chosen on test.")
        if self.min_gain < 0:
            raise UserError(f"eval.min_gain must be at least 0, got {self.min_gain}.")
        if self.stat_test not in STAT_TESTS:
            raise UserError(f"eval.stat_test must be one of {', '.join(STAT_TESTS)}, got {self.stat_test!r}.")
        if not 0.0 < self.max_p < 1.0:
            raise UserError(f"eval.max_p must be in (0, 1), got {self.max_p}.")
        if not self.relevant_labels:
            raise UserError("eval.relevant_labels is empty — name at least one ESCI label (e.g. [E]).")
        if self.systems is not None:
            unknown = [s for s in self.systems if s not in SYSTEMS]
            if unknown or not self.systems:
                raise UserError(f"eval.systems names unknown system {unknown[0] if unknown else '(none)'!r}; known: {', '.join(SYSTEMS)}.")
        if self.max_queries is not None and self.max_queries < 1:
            raise UserError(f"eval.max_queries must be at least 1, got {self.max_queries}.")


@dataclasses.dataclass
class BenchConfig:
    """Sizes of the speed benchmarks (defaults keep `reldistill bench` around 3-4 minutes on 2 cores)."""

    teacher: str = "smollm2-135m"  # backbone whose forward is timed (the teacher's compute)
    student: str = "minilm-l6"  # student whose encoding is timed
    teacher_pairs: int = dataclasses.field(default=64, metadata={"help": "ESCI test pairs scored per dtype."})
    teacher_batch: int = 16  # pairs per teacher forward
    student_docs: int = dataclasses.field(default=1024, metadata={"help": "Catalog texts encoded per method."})
    matmul_n: int = 2048  # matrix size of the matmul peak measurement
    search_queries: int = dataclasses.field(default=200, metadata={"help": "Queries timed per search mode."})
    index_docs: int | None = dataclasses.field(default=None, metadata={"help": "Catalog products indexed (default: the whole catalog)."})
    repeats: int = 3  # best-of for matmul timing
    gpu_model_config: str = "configs/llama-3.2-1b/config.json"  # architecture of the GPU teacher benchmark (random weights)
    gpu_seq_len: int = 128  # tokens per sequence in the GPU benchmark
    gpu_batch: int = 32  # sequences per batch in the GPU benchmark

    def __post_init__(self) -> None:
        for name in ("teacher_pairs", "teacher_batch", "student_docs", "matmul_n", "search_queries", "repeats",
                     "gpu_seq_len", "gpu_batch"):
            if getattr(self, name) < 1:
                raise UserError(f"bench.{name} must be at least 1, got {getattr(self, name)}.")
        if self.index_docs is not None and self.index_docs < 10:
            raise UserError(f"bench.index_docs must be at least 10, got {self.index_docs}.")
