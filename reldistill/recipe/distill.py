"""The ``distill:`` recipe section: candidate mining, losses and student optimisation."""

from __future__ import annotations

import dataclasses

from reldistill.config import require_float, require_int
from reldistill.errors import UserError
from reldistill.precision import parse_dtype

LOSSES = ("margin-mse", "kl", "mse")


@dataclasses.dataclass
class DistillConfig:
    """Candidates (judged + BM25 + dense + unlabeled queries), the loss, and the student's training."""

    student: str = dataclasses.field(default="minilm-l6", metadata={
        "help": "Base student: short name, hub id or local sentence-transformers folder."})
    # --- candidate mining (train queries only) ---
    bm25_depth: int = 8  # BM25 top-k catalog products per query
    dense_depth: int = 8  # student top-k catalog products per query
    unlabeled_depth: int = 3  # mined products per query for unlabeled / sparsely judged queries (each retriever)
    min_judged: int = 5  # queries with at least this many judged pairs count as "fully judged"
    max_unlabeled_queries: int | None = 600  # cap on unlabeled queries (seeded sample); None keeps all
    max_judged_queries: int | None = None  # cap on fully judged train queries whose candidates are labelled (seeded sample); None keeps all
    queries_path: str | None = dataclasses.field(default=None, metadata={
        "help": "Extra unlabeled queries (.txt one per line, or a csv/parquet table with 'query')."})
    drop_near_duplicates: bool = True  # drop mined products whose text nearly equals a judged positive's
    near_duplicate_threshold: float = 0.98  # cosine similarity (student) above which a mined product is a duplicate
    # --- training ---
    loss: str = dataclasses.field(default="margin-mse", metadata={"help": "margin-mse | kl | mse."})
    mnrl_weight: float = dataclasses.field(default=0.0, metadata={
        "help": "Weight of the in-batch-negative MNRL term on (query, E product[, hard negative]); 0 disables."})
    human_weight: float = 0.5  # target = (1-w)*teacher + w*soft_label for judged pairs (0 = teacher only)
    kl_list_size: int = 8  # candidates per KL list (query, c1..cN)
    kl_temperature: float = 1.0  # teacher/student temperature of the KL loss
    score_scale: float = 1.0  # teacher targets are scaled by this before the loss (margins in cosine units)
    negatives_per_positive: int = 4  # Margin-MSE pairs drawn per query positive
    epochs: float = dataclasses.field(default=2.0, metadata={"help": "Training epochs."})
    max_steps: int | None = dataclasses.field(default=None, metadata={"help": "Optimizer steps cap (overrides epochs)."})
    batch_size: int = 32  # rows per training step (at least 2: in-batch negatives)
    lr: float = 3e-5  # AdamW learning rate
    warmup_ratio: float = 0.1  # share of the steps with a linear warm-up
    weight_decay: float = 0.01  # AdamW weight decay
    max_seq_length: int = 96  # student tokens per text in training (longer texts are cut); mining encodes as the base model does
    precision: str = "auto"  # auto (bf16 autocast where the CPU/GPU runs bf16 natively) | float32 | bfloat16
    eval_split: str = "dev"  # split used to select the best epoch
    eval_each: str = "epoch"  # "epoch" or "steps"
    eval_base: bool = True  # also score the untrained student on the eval split (one more catalog encode)
    eval_steps: float = 0.5  # when eval_each == "steps": every N steps, or a fraction (< 1) of the training
    keep_checkpoints: int = 2  # checkpoints kept on disk
    seed: int = 13  # seed of sampling and training

    def __post_init__(self) -> None:
        self.precision = parse_dtype(self.precision, "distill.precision")
        if self.loss not in LOSSES:
            raise UserError(f"distill.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}.")
        for name in ("bm25_depth", "dense_depth", "unlabeled_depth", "min_judged"):
            if getattr(self, name) < 0:
                raise UserError(f"distill.{name} must be >= 0, got {getattr(self, name)}.")
        if self.bm25_depth + self.dense_depth == 0:
            raise UserError("distill.bm25_depth and distill.dense_depth are both 0 — set at least one to mine candidates.")
        if self.max_unlabeled_queries is not None and self.max_unlabeled_queries < 0:
            raise UserError(f"distill.max_unlabeled_queries must be >= 0 or null, got {self.max_unlabeled_queries}.")
        if self.max_judged_queries is not None and (isinstance(self.max_judged_queries, bool) or not isinstance(self.max_judged_queries, int)
                                                    or self.max_judged_queries < 1):
            raise UserError(f"distill.max_judged_queries must be a positive integer or null, got {self.max_judged_queries!r}.")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise UserError(f"distill.near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}.")
        if self.mnrl_weight < 0:
            raise UserError(f"distill.mnrl_weight must be >= 0, got {self.mnrl_weight}.")
        if not 0.0 <= self.human_weight <= 1.0:
            raise UserError(f"distill.human_weight must be in [0, 1], got {self.human_weight}.")
        if self.kl_list_size < 2:
            raise UserError(f"distill.kl_list_size must be at least 2, got {self.kl_list_size}.")
        if self.kl_temperature <= 0 or self.score_scale <= 0:
            raise UserError("distill.kl_temperature and distill.score_scale must be positive.")
        if self.negatives_per_positive < 1:
            raise UserError(f"distill.negatives_per_positive must be at least 1, got {self.negatives_per_positive}.")
        if self.epochs <= 0 and not self.max_steps:
            raise UserError(f"distill.epochs must be positive, got {self.epochs}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"distill.max_steps must be at least 1 or null, got {self.max_steps}.")
        if self.batch_size < 2:
            raise UserError(f"distill.batch_size must be at least 2 (in-batch negatives), got {self.batch_size}.")
        if not 0 < self.lr < 1:
            raise UserError(f"distill.lr must be in (0, 1), got {self.lr}.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UserError(f"distill.warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.max_seq_length < 8:
            raise UserError(f"distill.max_seq_length must be at least 8, got {self.max_seq_length}.")
        if self.eval_split not in ("dev", "train", "none"):
            raise UserError(f"distill.eval_split must be 'dev' or 'none' (never test), got {self.eval_split!r}.")
        if self.eval_each not in ("epoch", "steps"):
            raise UserError(f"distill.eval_each must be 'epoch' or 'steps', got {self.eval_each!r}.")
        if self.eval_steps <= 0 or (self.eval_steps > 1 and self.eval_steps != int(self.eval_steps)):
            raise UserError(f"distill.eval_steps must be a step count or a fraction in (0, 1), got {self.eval_steps}.")
        if self.keep_checkpoints < 1:
            raise UserError("distill.keep_checkpoints must be at least 1.")
        # finite numbers (NaN and inf pass the comparisons above) — issue 16
        require_float(self.epochs, "distill.epochs", 0.0)
        for name in ("lr", "kl_temperature", "score_scale", "eval_steps"):
            require_float(getattr(self, name), f"distill.{name}", 0.0, low_open=True)
        for name in ("mnrl_weight", "weight_decay"):
            require_float(getattr(self, name), f"distill.{name}", 0.0)
        require_int(self.batch_size, "distill.batch_size", 2)
