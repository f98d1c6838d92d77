"""Teacher recipe sections: ``teacher:`` (model), ``train:`` (optimisation) and ``score:`` (inference)."""

from __future__ import annotations

import dataclasses

from reldistill.config import require_float, require_int
from reldistill.errors import UserError
from reldistill.precision import parse_dtype

DEFAULT_TEMPLATE = "Query: {query}\nProduct: {text}\nRelevant:"
# The `head: lm` prompt: the ESCI meanings, then a yes/no question answered by the LM head's next token.
LM_TEMPLATE = ("Shopping search. Exact: the product matches the query. Substitute: could replace it. "
               "Complement: goes with it. Irrelevant: none.\nQuery: {query}\nProduct: {text}\nExact match? Answer:")
HEADS = ("mlp", "linear", "lm")
LOSSES = ("bce", "listwise", "ranknet")


@dataclasses.dataclass
class TeacherConfig:
    """The cross-encoder: backbone + last-token pooling + score head, with LoRA (optionally 4-bit QLoRA)."""

    model: str = "smollm2-135m"  # short name, hub id or local folder (resolved by reldistill.models)
    model_config: str | None = None  # architecture config.json for `teacher plan` without weights
    head: str = "mlp"  # "mlp" (seed), "linear", or "lm": logit(yes) - logit(no) of the backbone's own LM head
    answer_tokens: list[str] = dataclasses.field(default_factory=lambda: [" yes", " no"])  # head lm: one token each
    lm_row_trainable: bool = False  # head lm: also train the yes−no score row (its bias always trains)
    head_hidden: int = 1024  # MLP head hidden width
    head_dropout: float = 0.1  # MLP head dropout
    lora_r: int = 128  # LoRA rank (0 disables LoRA)
    lora_alpha: int = 256  # LoRA scaling alpha
    lora_dropout: float = 0.05  # LoRA dropout
    target_modules: list[str] = dataclasses.field(default_factory=lambda: ["q_proj", "v_proj"])  # modules that get LoRA adapters
    load_in_4bit: bool = False  # QLoRA: NF4 base weights via bitsandbytes
    template: str | None = None  # must contain {query} and {text}; default DEFAULT_TEMPLATE (LM_TEMPLATE for head lm)
    max_length: int = 128  # tokens; longer pairs are truncated (product text first)
    padding_side: str = "left"  # left | right: where pad tokens go in a batch (the score reads the last real token)
    # a sentence-transformers model whose cosine is blended with the LLM's logit (teacher/prior.py);
    # the LLM weight is chosen on dev from prior_weights at the end of training (1.0 = the LLM alone)
    prior_student: str | None = None
    prior_weights: list[float] = dataclasses.field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])  # LLM weights tried on dev for the prior blend

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise UserError(f"teacher.head must be one of {', '.join(HEADS)}, got {self.head!r}.")
        if len(self.answer_tokens) != 2 or self.answer_tokens[0] == self.answer_tokens[1]:
            raise UserError(f"teacher.answer_tokens must be two different tokens [yes, no], got {self.answer_tokens!r}.")
        if self.template is None:
            self.template = LM_TEMPLATE if self.head == "lm" else DEFAULT_TEMPLATE
        if "{query}" not in self.template or "{text}" not in self.template:
            raise UserError("teacher.template must contain both {query} and {text}.")
        if self.lora_r < 0:
            raise UserError(f"teacher.lora_r must be >= 0 (0 disables LoRA), got {self.lora_r}.")
        if not 0.0 <= self.lora_dropout < 1.0 or not 0.0 <= self.head_dropout < 1.0:
            raise UserError("teacher.lora_dropout and teacher.head_dropout must be in [0, 1).")
        if self.max_length < 8:
            raise UserError(f"teacher.max_length must be at least 8 tokens, got {self.max_length}.")
        if self.padding_side not in ("left", "right"):
            raise UserError(f"teacher.padding_side must be 'left' or 'right', got {self.padding_side!r}.")
        if self.head_hidden < 1:
            raise UserError(f"teacher.head_hidden must be positive, got {self.head_hidden}.")
        if not isinstance(self.prior_weights, list) or not self.prior_weights:
            raise UserError("teacher.prior_weights must be a non-empty list of LLM weights in (0, 1].")
        for w in self.prior_weights:
            require_float(w, "teacher.prior_weights (each LLM weight)", 0.0, 1.0, low_open=True)


@dataclasses.dataclass
class TrainConfig:
    """Optimisation: BCEWithLogits on soft labels, AdamW, checkpoints every ``checkpoint_fraction`` of an epoch."""

    lr: float = 1e-5  # AdamW learning rate of the LoRA weights (and of the head unless head_lr)
    head_lr: float | None = None  # defaults to lr
    weight_decay: float = 0.0  # AdamW weight decay
    epochs: float = 7.0  # passes over the train pairs
    batch_size: int = 16  # per process
    grad_accum: int = 1  # micro-batches per optimizer step
    warmup_ratio: float = 0.0  # share of the steps with a linear warm-up
    lr_schedule: str = "linear"  # any transformers scheduler name: linear, cosine, constant_with_warmup...
    max_grad_norm: float = 1.0  # gradient clipping norm
    precision: str = "auto"  # fp32 | bf16 | auto (bf16 where the hardware has it)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory, slower)
    checkpoint_fraction: float = 0.2  # checkpoint + dev eval every 20% of an epoch
    keep_checkpoints: int = 2  # checkpoints kept on disk
    include_sparse: bool = True  # also train on queries with a single judged pair
    eval_split: str = "dev"  # held-out split for model selection
    eval_max_pairs: int | None = None  # legacy cap: ~pairs, still whole queries (use eval_max_queries)
    eval_max_queries: int | None = None  # cap dev by WHOLE queries with >= 2 judged candidates (seeded)
    select_metric: str = "ndcg@10"  # the kept checkpoint: best dev ndcg@10 (or "mse": lowest)
    loss: str = "bce"  # bce (pointwise) | listwise (softmax CE vs the group's soft labels) | ranknet
    bce_weight: float = 0.0  # listwise/ranknet: + this x pointwise BCE
    group_size: int = 0  # > 0: batches of query groups of this many pairs (judged + random negatives); batch_size counts groups
    group_negatives: int = 0  # random other-query products added per query group (label I)
    train_layers: int = 0  # > 0: LoRA on the top N layers only; the lower layers' states are cached once per pair
    cache_prefix: bool = True  # train_layers: run the frozen lower layers once per pair (False: every step, same result)
    cache_dir: str | None = None  # prefix cache home (default: $RELDISTILL_CACHE/teacher-prefix)
    bundled: str | None = None  # a shipped trained teacher `reldistill demo` reuses (see teacher/bundle.py)
    init_from: str | None = dataclasses.field(default=None, metadata={
        "help": "A trained teacher (run artifact or bundle) whose LoRA and head start this run; its LoRA layers must be among this run's."})
    eval_batch_size: int = 32  # pairs per forward in dev evaluation
    eval_at_start: bool = True  # score the untrained model first (the baseline in the manifest)
    select_best: bool = True  # the artifact gets the checkpoint with the best dev select_metric
    max_steps: int | None = dataclasses.field(default=None, metadata={
        "help": "Stop after this many optimizer steps (0: write the untrained model); overrides epochs when smaller."})
    max_minutes: float | None = dataclasses.field(default=None, metadata={
        "help": "Wall-clock budget; stops after a checkpoint. A one-process run times its first steps and ends its LR "
                "schedule at the last step that fits."})
    seed: int = 0  # training seed (order of batches, initial weights, dropout)
    log_every: int = 10  # optimizer steps between log lines
    cpu_threads: int | str | None = "auto"  # CPU only: "auto" = cores not busy (shared machines), N, or None (torch default)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise UserError("train.lr and train.epochs must be positive and train.batch_size/grad_accum >= 1.")
        if not 0.0 < self.checkpoint_fraction <= 1.0:
            raise UserError(f"train.checkpoint_fraction must be in (0, 1], got {self.checkpoint_fraction}.")
        self.precision = parse_dtype(self.precision, "train.precision")
        schedules = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
        if self.lr_schedule not in schedules:
            raise UserError(f"train.lr_schedule must be one of {', '.join(schedules)}, got {self.lr_schedule!r}.")
        if self.max_steps is not None and self.max_steps < 0:
            raise UserError(f"train.max_steps must be >= 0, got {self.max_steps}.")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise UserError(f"train.max_minutes must be positive, got {self.max_minutes}.")
        # finite numbers, positive counts, and model selection on a held-out train share only (issue 16)
        require_float(self.lr, "train.lr", 0.0, low_open=True)
        require_float(self.epochs, "train.epochs", 0.0, low_open=True)
        for name in ("head_lr", "max_minutes"):
            if getattr(self, name) is not None:
                require_float(getattr(self, name), f"train.{name}", 0.0, low_open=True)
        require_float(self.weight_decay, "train.weight_decay", 0.0)
        require_float(self.max_grad_norm, "train.max_grad_norm", 0.0, low_open=True)
        require_float(self.warmup_ratio, "train.warmup_ratio", 0.0, 1.0, high_open=True)
        for name in ("batch_size", "grad_accum", "eval_batch_size", "log_every", "keep_checkpoints"):
            require_int(getattr(self, name), f"train.{name}")
        if self.eval_max_pairs is not None:
            require_int(self.eval_max_pairs, "train.eval_max_pairs")
        if self.eval_split not in ("dev", "train"):
            raise UserError(f"train.eval_split must be 'dev' (or 'train'), never the test split — got {self.eval_split!r}.")
        if self.cpu_threads is not None and self.cpu_threads != "auto":
            require_int(self.cpu_threads, "train.cpu_threads (a thread count, 'auto' or null)")
        if self.loss not in LOSSES:
            raise UserError(f"train.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}.")
        if self.select_metric not in ("ndcg@10", "ndcg", "mse"):
            raise UserError(f"train.select_metric must be ndcg@10, ndcg or mse, got {self.select_metric!r}.")
        if self.loss != "bce" and self.group_size < 2:
            raise UserError(f"train.loss {self.loss} ranks within query groups — set train.group_size >= 2.")
        if min(self.group_size, self.group_negatives, self.train_layers) < 0 or self.bce_weight < 0:
            raise UserError("train.group_size, group_negatives, train_layers and bce_weight must be >= 0.")
        if self.eval_max_queries is not None and self.eval_max_queries < 1:
            raise UserError(f"train.eval_max_queries must be >= 1, got {self.eval_max_queries}.")


@dataclasses.dataclass
class ScoreConfig:
    """Inference: batch size, dtype, shard size for resumable output."""

    batch_size: int = dataclasses.field(default=32, metadata={"help": "Pairs per teacher forward pass."})
    dtype: str = dataclasses.field(default="auto", metadata={"help": "fp32 | bf16 | auto (bf16 where the hardware has it)."})
    shard_size: int = dataclasses.field(default=512, metadata={"help": "Rows per resumable shard."})
    merge_lora: bool = True  # merge the LoRA adapter into the backbone weights at load (faster scoring)

    def __post_init__(self) -> None:
        self.dtype = parse_dtype(self.dtype, "score.dtype")
        require_int(self.batch_size, "score.batch_size")
        require_int(self.shard_size, "score.shard_size")
