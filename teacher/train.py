"""Teacher training: a small accelerate loop (BCEWithLogits on soft labels, AdamW) with exact resume.

Why our own accelerate loop rather than HF Trainer: a checkpoint holds only the trainable
parameters (LoRA + head, 13.6M+ on Llama-3.2-1B instead of the 1.2B frozen base), the held-out
eval is a per-query ranking metric (nDCG of each query's judged candidates) plus MSE, and a
wall-clock budget must stop after a checkpoint and still write a usable artifact. The loop is a
deterministic function of (recipe, step): micro-batch ``m`` comes from a seeded permutation of
epoch ``m // micro_per_epoch`` and dropout is reseeded from the step, so a resumed run takes
exactly the same path as an uninterrupted one. accelerate supplies the device, DDP/FSDP,
bf16 autocast and process sharding (`accelerate launch --config_file configs/accelerate/...`).

A run is named parts rather than a ``transformers.Trainer`` subclass: `launch` (processes, the
checkpoint a resume continues, refusals before any heavy work), then a `TeacherTraining` whose
``__init__`` builds data, model, optimizer and the restored `RunState`, and whose methods are the
loop (`TeacherTraining.optimizer_step`, the budget check, `TeacherTraining.save_checkpoint`) and
`TeacherTraining.finalize` (best checkpoint, prior, calibration, artifact). A Trainer subclass would
own the data order, the step loop and the checkpoint format, which is where this loop's contract
lives: the forward from cached frozen-prefix states, a wall-clock budget agreed across processes
that stops only after a checkpoint, and a resume after kill -9 that reproduces losses and weights
bit for bit (tests pin all three).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reldistill.artifacts import atomic_path, check_replaceable, data_fingerprint, write_json, write_manifest
from reldistill.calibration import CALIBRATION_FILE, save_calibration
from reldistill.calibration import summary as calibration_summary
from reldistill.errors import UserError
from reldistill.gguf_cache import cache_root
from reldistill.precision import reset_accelerate_state, resolve_dtype
from reldistill.progress import progress_bar
from reldistill.recipe import Recipe, override
from reldistill.settings import Runtime
from reldistill.teacher.artifact import KIND, load_init_weights, save_trainables
from reldistill.teacher.backbone import set_cpu_threads
from reldistill.teacher.calibrate import fit_teacher_calibration
from reldistill.teacher.inputs import PairEncoder, choose_pad_token, length_buckets
from reldistill.teacher.losses import teacher_loss
from reldistill.teacher.metrics import evaluate_scores
from reldistill.teacher.model import answer_token_ids, num_layers
from reldistill.teacher.pairs import add_random_negatives, cap_by_query, cap_queries, query_groups, split_pairs
from reldistill.teacher.prefix_cache import PrefixStates, cache_key, prefix_states
from reldistill.teacher.prior import Prior, fit_prior
from reldistill.teacher.teacher import build_cross_encoder

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoints"
STATE_FILE = "state.json"
TRAINABLE_FILE = "trainable.safetensors"
OPTIM_FILE = "optimizer.pt"
LOG_FILE = "train_log.jsonl"
FIT_AFTER = 5  # steps timed before a time budget fits the LR schedule (train.max_minutes)
REFIT_AFTER = 25  # ... fitted again on steps FIT_AFTER+1..REFIT_AFTER (the first steps run slow: new shapes, allocator),
# and at each checkpoint after it on every step since FIT_AFTER (the pace drifts)
# Recipe fields that may change between a run and its resume (budgets and eval cadence only).
RESUME_FREE = {"max_steps", "max_minutes", "log_every", "eval_max_pairs", "eval_max_queries", "eval_batch_size",
               "keep_checkpoints", "cpu_threads", "cache_dir", "cache_prefix", "bundled"}
PRIOR_FIELDS = {"prior_student", "prior_weights"}  # fitted after training: checkpoints resume across them


@dataclasses.dataclass
class Plan:
    """The step arithmetic of a run (the same on every process)."""

    n_train: int
    world: int
    micro_batch: int  # per process
    grad_accum: int
    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int  # from epochs (the LR schedule's length)
    ckpt_every: int


def make_plan(n_train: int, world: int, micro_batch: int, grad_accum: int, epochs: float, fraction: float) -> Plan:
    """The `Plan` of ``n_train`` units on ``world`` processes (a checkpoint every ``fraction`` of an epoch)."""
    micro_per_epoch = math.ceil(n_train / (micro_batch * world))
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / grad_accum))
    total = max(1, math.ceil(epochs * steps_per_epoch))
    return Plan(n_train, world, micro_batch, grad_accum, micro_per_epoch, steps_per_epoch, total,
                max(1, round(fraction * steps_per_epoch)))


def micro_batch_indices(plan: Plan, m: int, rank: int, seed: int) -> np.ndarray:
    """Row indices of micro-batch ``m`` for process ``rank``: seeded per-epoch permutation, wrap-around fill."""
    epoch, k = divmod(m, plan.micro_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(plan.n_train)
    g = plan.micro_batch * plan.world
    idx = np.arange(k * g + rank * plan.micro_batch, k * g + (rank + 1) * plan.micro_batch) % plan.n_train
    return perm[idx]


def recipe_key(recipe: Recipe) -> dict[str, Any]:
    """The recipe fields a checkpoint must share with the run that resumes it."""
    train = {k: v for k, v in dataclasses.asdict(recipe.train).items() if k not in RESUME_FREE}
    teacher = {k: v for k, v in dataclasses.asdict(recipe.teacher).items() if k not in PRIOR_FIELDS}
    return {"teacher": teacher, "train": train, "data": dataclasses.asdict(recipe.data)}


def list_checkpoints(out: Path) -> list[Path]:
    """The finished checkpoint folders in ``out/checkpoints``, oldest step first."""
    d = out / CKPT_DIR
    return sorted((p for p in d.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")), key=lambda p: int(p.name.split("-")[1])) if d.is_dir() else []


def checkpoint_path(out: Path, step: int) -> Path:
    """The checkpoint folder of ``step``."""
    return out / CKPT_DIR / f"step-{step:07d}"


def read_checkpoint(ck: Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(state, trainable tensors, optimizer+scheduler state); anything unreadable is a UserError."""
    fix = f"delete {ck} to resume from the previous checkpoint, or rerun with --no-resume"
    try:
        state = json.loads((ck / STATE_FILE).read_text(encoding="utf-8"))
        weights = load_file(str(ck / TRAINABLE_FILE))
        optim = torch.load(ck / OPTIM_FILE, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise UserError(f"checkpoint {ck} is missing {Path(e.filename or '?').name} — {fix}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError, RuntimeError, EOFError, ValueError) as e:
        raise UserError(f"checkpoint {ck} is truncated or corrupted ({type(e).__name__}) — {fix}.") from None
    return state, weights, optim


def prune_checkpoints(out: Path, keep: int, best: dict | None) -> None:
    """Delete all checkpoints but the last ``keep`` (at least 1) and the ``best`` one."""
    kept = set(list_checkpoints(out)[-max(keep, 1):])
    for c in list_checkpoints(out):
        if c not in kept and not (best and c.name == checkpoint_path(out, best["step"]).name):
            shutil.rmtree(c, ignore_errors=True)


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The trainable parameters of ``model`` as contiguous fp32 CPU tensors."""
    return {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainables(model, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` into the parameters of ``model`` with the same names."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in weights:
                p.copy_(weights[n])


def append_log(out: Path, record: dict) -> None:
    """One event (+ its wall-clock ``time``, so step times can be read off the log) appended to the train log."""
    with (out / LOG_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")


def better(metric: str, new: float, old: float) -> bool:
    """Is ``new`` a better dev value of ``metric`` than ``old`` (lower MSE, higher nDCG)?"""
    return new < old if metric == "mse" else new > old


def update_best(best: dict | None, step: int, metric: str, metrics: dict) -> dict | None:
    """The best checkpoint once ``step`` scored ``metrics`` (a best by another metric is replaced)."""
    score = metrics.get(metric)
    if score is not None and (best is None or best.get("metric") != metric or better(metric, score, best["value"])):
        return {"step": step, "metric": metric, "value": score}
    return best


class DevEvaluator:
    """Scores the held-out pairs with the model being trained (main process) → MSE + nDCG over whole queries.

    With ``prefix`` (cached frozen-prefix states of the same pairs) only layers ``split..`` run.
    """

    def __init__(self, df, encoder, batch_size: int):
        self.df = df
        self.encoder = encoder
        self.ids = encoder.encode(df["query"].tolist(), df["text"].tolist()) if len(df) else []
        self.batches = length_buckets([len(r) for r in self.ids], batch_size)
        self.prefix, self.split = None, 0
        self.last_logits: np.ndarray | None = None
        self.last_probs: np.ndarray | None = None

    def use_prefix(self, prefix, split: int) -> None:
        """Score from ``prefix`` (the dev pairs' states after ``split`` layers) from now on."""
        self.prefix, self.split = prefix, split

    @torch.inference_mode()
    def __call__(self, model, accelerator) -> dict[str, Any]:
        if not len(self.df):
            return {}
        was_training = model.training
        model.eval()
        logits = np.zeros(len(self.df), dtype=np.float64)
        dev = accelerator.device
        with accelerator.autocast():
            for b in self.batches:
                if self.prefix is not None:
                    hidden, mask = self.prefix.batch(b)
                    out = model.forward_from(hidden.to(dev), mask.to(dev), self.split)
                else:
                    enc = self.encoder.collate([self.ids[i] for i in b])
                    out = model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev))
                logits[b] = out.float().cpu().numpy()
        model.train(was_training)
        self.last_logits = logits
        self.last_probs = 1.0 / (1.0 + np.exp(-logits))
        return evaluate_scores(self.df, self.last_probs)


def budgeted(recipe: Recipe, max_steps: int | None, max_minutes: float | None) -> Recipe:
    """``recipe`` with the caller's step / wall-clock budget over its own (None keeps the recipe's)."""
    if max_steps is not None and max_steps < 0:
        raise UserError(f"--max-steps must be >= 0, got {max_steps}.")
    if max_minutes is not None and max_minutes <= 0:
        raise UserError(f"--max-minutes must be positive, got {max_minutes}.")
    return dataclasses.replace(recipe, train=override(recipe.train, max_steps=max_steps, max_minutes=max_minutes))


@dataclasses.dataclass
class Launch:
    """The cheap start of a run, before any data or model: the processes and the checkpoint a resume continues."""

    accelerator: Any
    dtype: torch.dtype
    threads: int  # CPU threads per process
    key: dict[str, Any]  # `recipe_key` of the run
    checkpoint: Path | None = None  # the last checkpoint (a resume continues from it)
    restored: tuple[dict, dict[str, torch.Tensor], dict] | None = None  # its `read_checkpoint`
    runtime: Runtime = dataclasses.field(default_factory=Runtime)  # the settings it runs with (backends, threads, caches)

    @property
    def main(self) -> bool:
        """Is this the main process?"""
        return self.accelerator.is_main_process


def launch(recipe: Recipe, out: Path, resume: bool, runtime: Runtime) -> Launch:
    """Threads, precision and processes (as ``runtime`` sets them); refuses a foreign ``out`` and a broken or foreign
    last checkpoint."""
    from accelerate import Accelerator

    tr = recipe.train
    threads = set_cpu_threads(tr.cpu_threads, runtime)
    dtype = resolve_dtype(tr.precision, runtime=runtime)
    # no GPU: CPU processes (gloo) — `accelerate launch --multi_gpu --num_processes N` spawns them via torchrun
    reset_accelerate_state(runtime)  # an earlier in-process Trainer may have fixed another precision
    accelerator = Accelerator(mixed_precision="bf16" if dtype == torch.bfloat16 else "no", cpu=not torch.cuda.is_available())
    # never train into (and later write over) a folder that is neither a teacher nor a teacher being trained;
    # only the main process looks (another rank could see the main one's first files; a refusal there ends the launch)
    if accelerator.is_main_process and not (out.is_dir() and {p.name for p in out.iterdir()} <= {CKPT_DIR, LOG_FILE, ".artifact.tmp"}):
        check_replaceable(out, KIND)
    key = recipe_key(recipe)
    ckpts = list_checkpoints(out) if resume else []
    restored = read_checkpoint(ckpts[-1]) if ckpts else None  # a broken checkpoint fails before any heavy work
    if restored and restored[0].get("recipe") != json.loads(json.dumps(key)):
        raise UserError(f"checkpoints in {out / CKPT_DIR} were made with a different recipe — rerun with --no-resume or another --output.")
    return Launch(accelerator, dtype, threads, key, ckpts[-1] if ckpts else None, restored, runtime)


def already_trained(start: Launch, out: Path, tr) -> bool:
    """Is the artifact in ``out`` finished (or its time budget spent) at the last checkpoint? (warned on main)"""
    if not (start.restored and (out / "manifest.json").is_file()):
        return False
    st = start.restored[0]
    target = min(st.get("schedule_steps") or st["total_steps"], tr.max_steps if tr.max_steps is not None else st["total_steps"])
    spent = tr.max_minutes is not None and st.get("elapsed_s", 0.0) >= tr.max_minutes * 60
    if st["step"] >= target or spent:  # finished (or its budget is spent): nothing to do
        if start.main:
            log.warning("%s is already trained (step %d of %d) — rerun with --no-resume to train again",
                        out, st["step"], st["total_steps"])
        return True
    return False


@dataclasses.dataclass
class TrainData:
    """The pairs of a run (the same on every process)."""

    train: Any  # DataFrame: the train pairs (+ random negatives when batches are query groups)
    dev: Any  # DataFrame: whole held-out queries that nDCG can rank
    groups: list[np.ndarray] | None  # query groups (rows of ``train``) when train.group_size, else None


def load_train_data(recipe: Recipe) -> TrainData:
    """The train pairs (grouped by query when train.group_size) and the capped, seeded held-out queries."""
    tr = recipe.train
    pairs = split_pairs(recipe.data, tr.include_sparse)
    train_df = pairs["train"]
    # dev: whole queries that nDCG can rank (>= 2 judged candidates), capped by query count, seeded
    dev_df = cap_by_query(cap_queries(pairs.get(tr.eval_split, pairs["dev"]), tr.eval_max_queries, tr.seed),
                          tr.eval_max_pairs, tr.seed)
    groups = None
    if tr.group_size:  # units are query groups: a query's candidates (+ random negatives) stay together
        train_df = add_random_negatives(train_df, tr.group_negatives, tr.seed)
        groups = query_groups(train_df, tr.group_size, tr.seed)
    return TrainData(train_df, dev_df, groups)


def build_model(tc, tr, dtype: torch.dtype, runtime: Runtime | None = None):
    """The seeded cross-encoder to train (trainables in fp32), its tokenizer (with a pad token) and resolved base."""
    torch.manual_seed(tr.seed)
    model, tokenizer, resolved = build_cross_encoder(tc, dtype, train_layers=tr.train_layers, runtime=runtime)
    choose_pad_token(tokenizer)
    if tr.init_from:  # a warm start: the artifact's LoRA and head, loaded before the trainables are cast to fp32 below
        log.info("teacher train: starting from %s (%d LoRA tensors)", tr.init_from, load_init_weights(model, tc, tr.init_from))
    for p in model.parameters():  # trainable params stay fp32 (bf16 autocast runs the maths)
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if tr.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer, resolved


def make_scheduler(optimizer, tr, total_steps: int, step: int = 0):
    """train.lr_schedule over ``total_steps`` (warm-up train.warmup_ratio of them), advanced to ``step``."""
    from transformers import get_scheduler

    scheduler = get_scheduler(tr.lr_schedule, optimizer, num_warmup_steps=round(tr.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    with warnings.catch_warnings():  # stepping a fresh schedule to where the run is: no optimizer step between
        warnings.simplefilter("ignore")
        for _ in range(step):
            scheduler.step()
    return scheduler


def steps_in_budget(step: int, stop_at: int, per_step_s: float, left_s: float, eval_s: float, ckpt_every: int) -> int:
    """The step a run at ``step`` reaches (at most ``stop_at``) in ``left_s`` seconds at ``per_step_s`` a step, with a
    dev evaluation of ``eval_s`` at every ``ckpt_every``-th step and one at the end."""
    budget = left_s - eval_s
    while step < stop_at:
        cost = per_step_s + (eval_s if (step + 1) % ckpt_every == 0 else 0.0)
        if budget < cost:
            break
        budget -= cost
        step += 1
    return step


def make_optimizer(model, tr, total_steps: int):
    """(trainable params, AdamW with the head at train.head_lr, the LR schedule over ``total_steps``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    head_ids = {id(p) for p in model.head.parameters()}
    groups = [{"params": [p for p in params if id(p) not in head_ids], "lr": tr.lr},
              {"params": [p for p in params if id(p) in head_ids], "lr": tr.head_lr or tr.lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=tr.lr, weight_decay=tr.weight_decay)
    return params, optimizer, make_scheduler(optimizer, tr, total_steps)


@dataclasses.dataclass
class RunState:
    """Where a run stands: what a checkpoint saves and a resume restores (+ this process's dev logits)."""

    step: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)  # one record per checkpoint: step, epoch, dev
    best: dict | None = None  # the best checkpoint by train.select_metric
    elapsed_before: float = 0.0  # training seconds before this resume
    horizon: int | None = None  # the LR schedule's length when fitted to the time budget (else the plan's)
    dev_logits: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # per checkpoint step (not saved)


def restore(start: Launch, model, optimizer, scheduler, total_steps: int) -> RunState:
    """The last checkpoint's trainables + optimizer + scheduler loaded (the step fixes the data order); else a fresh state."""
    if not start.restored:
        return RunState()
    state, weights, optim = start.restored
    missing = set(trainable_state(model)) - set(weights)
    if missing:
        raise UserError(f"checkpoint {start.checkpoint} lacks {sorted(missing)[0]} — it is from another model; rerun with --no-resume.")
    load_trainables(model, weights)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    if start.main:
        log.warning("resuming from %s (step %d of %d)", start.checkpoint.name, state["step"], total_steps)
    return RunState(state["step"], state.get("history", []), state.get("best"), float(state.get("elapsed_s", 0.0)),
                    horizon=state.get("schedule_steps"))


class TeacherTraining:
    """One training run on this process (in-process or one rank of ``accelerate launch``).

    ``__init__`` builds everything from the recipe (data, model, optimizer, the restored `RunState`, the
    prefix cache); `run` announces, trains to the step or time budget with checkpoints, and finalizes.
    """

    def __init__(self, recipe: Recipe, out: Path, start: Launch, progress: bool, t_start: float):
        tc, tr = recipe.teacher, recipe.train
        self.recipe, self.tc, self.tr, self.out, self.start = recipe, tc, tr, out, start
        self.progress, self.t_start = progress, t_start
        self.accelerator = acc = start.accelerator
        self.main, self.rank, self.world = acc.is_main_process, acc.process_index, acc.num_processes
        self.data = load_train_data(recipe)
        if tr.train_layers and self.world > 1:
            raise UserError("train.train_layers (cached prefix) trains in one process — drop accelerate launch or set train_layers: 0.")
        model, self.tokenizer, self.resolved = build_model(tc, tr, start.dtype, start.runtime)
        self.encoder = PairEncoder(self.tokenizer, tc.template, tc.max_length, tc.padding_side)
        self.train_ids = self.encoder.encode(self.data.train["query"].tolist(), self.data.train["text"].tolist())
        self.targets = torch.tensor(self.data.train["soft_label"].to_numpy(), dtype=torch.float32)
        n_units = len(self.data.groups) if self.data.groups is not None else len(self.train_ids)
        self.plan = plan = make_plan(n_units, self.world, tr.batch_size, tr.grad_accum, tr.epochs, tr.checkpoint_fraction)
        self.stop_at = self.planned_stop = plan.total_steps if tr.max_steps is None else min(plan.total_steps, tr.max_steps)
        horizon = start.restored[0].get("schedule_steps") if start.restored else None  # fitted to the budget before a resume
        self.params, optimizer, self.scheduler = make_optimizer(model, tr, horizon or plan.total_steps)
        self.raw_optimizer, self.eval_s = optimizer, 0.0
        self.state = restore(start, model, optimizer, self.scheduler, plan.total_steps)
        if horizon:
            self.stop_at = min(self.stop_at, horizon)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.raw_model = acc.unwrap_model(self.model)
        from accelerate.utils import DistributedType

        self.is_fsdp = acc.distributed_type == DistributedType.FSDP
        self.evaluator = DevEvaluator(self.data.dev, self.encoder, tr.eval_batch_size)
        self.split, self.train_prefix, self.prefix_s = 0, None, 0.0
        if tr.train_layers and tr.cache_prefix:  # the frozen lower layers run once per pair; training and dev eval start from their states
            self.split, self.train_prefix, self.prefix_s = self.cache_prefix()

    # setup

    def cache_prefix(self) -> tuple[int, PrefixStates, float]:
        """(split layer, the train pairs' prefix states, seconds taken); the dev evaluator gets the dev pairs' states."""
        t_prefix = time.monotonic()
        raw = self.raw_model
        split = num_layers(raw.backbone) - self.tr.train_layers
        train_prefix = self.prefix_states(self.train_ids, split, "train")
        if len(self.data.dev):
            self.evaluator.use_prefix(self.prefix_states(self.evaluator.ids, split, "dev"), split)
        return split, train_prefix, time.monotonic() - t_prefix

    def prefix_states(self, ids: list[list[int]], split: int, what: str) -> PrefixStates:
        """The states after ``split`` layers of ``ids``, from (or into) the prefix cache."""
        tr, resolved, raw = self.tr, self.resolved, self.raw_model
        cdir = Path(tr.cache_dir) if tr.cache_dir else cache_root(self.start.runtime) / "teacher-prefix"
        base_id = f"{resolved.hub_id or resolved.path}:{resolved.gguf_file}"
        pdtype = next(raw.backbone.parameters()).dtype
        return prefix_states(raw, self.encoder, ids, split, tr.eval_batch_size,
                             cdir / f"{cache_key(base_id, split, pdtype, ids)}.safetensors",
                             self.accelerator.autocast, f"teacher prefix cache ({what})" if self.progress and self.main else None)

    def announce(self) -> dict:
        """Main process: a fresh run's log is reset and its untrained model scored (returned); the summary printed."""
        if not self.main:
            return {}
        self.out.mkdir(parents=True, exist_ok=True)
        start_metrics = {}
        if self.state.step == 0 and not self.state.history:
            (self.out / LOG_FILE).unlink(missing_ok=True)
            t_eval = time.monotonic()
            start_metrics = self.evaluator(self.raw_model, self.accelerator) if self.tr.eval_at_start and not self.is_fsdp else {}
            self.eval_s = time.monotonic() - t_eval if start_metrics else 0.0
        print(self.summary(), flush=True)
        return start_metrics

    def summary(self) -> str:
        """The one-line description of the run printed at its start."""
        tr, plan, dev_df = self.tr, self.plan, self.data.dev
        units = (f"{plan.n_train:,} query groups of <= {tr.group_size} ({len(self.train_ids):,} pairs)"
                 if self.data.groups is not None else f"{plan.n_train:,} train pairs")
        return (f"teacher train: {units}, {tr.eval_split} {dev_df['query_id'].nunique():,} whole queries ({len(dev_df):,} pairs), "
                f"loss {tr.loss}{f' + {tr.bce_weight} bce' if tr.loss != 'bce' and tr.bce_weight else ''}, "
                f"{f'top {tr.train_layers} layers on a cached prefix ({self.prefix_s:.0f} s), ' if tr.train_layers else ''}{self.world} process(es), "
                f"{plan.steps_per_epoch} steps/epoch, checkpoint every {plan.ckpt_every} steps, "
                f"{'stop at' if self.stop_at < plan.total_steps else 'total'} {self.stop_at}/{plan.total_steps} steps, "
                f"precision {'bf16' if self.start.dtype == torch.bfloat16 else 'fp32'}, {self.start.threads} CPU thread(s)/process")

    def run(self) -> None:
        """Announce, save the untrained checkpoint (when scored), train, and (main process) write the artifact."""
        start_metrics = self.announce()
        if start_metrics:  # the untrained model is a checkpoint too (a zero-shot LM head may beat early steps)
            self.save_checkpoint(start_metrics)
        self.train()
        if self.main:
            self.finalize()

    # the loop

    def elapsed(self) -> float:
        """Training seconds so far, runs before a resume included."""
        return self.state.elapsed_before + time.monotonic() - self.t_start

    def train(self) -> None:
        """Optimizer steps up to ``stop_at`` or the time budget: a log line every train.log_every steps, a
        checkpoint (+ dev eval) every ``ckpt_every`` steps, at the last step and when the budget is spent."""
        self.model.train()
        st, plan, tr = self.state, self.plan, self.tr
        pairs_per_step = plan.micro_batch * self.world * plan.grad_accum
        shown = self.main and self.progress and st.step < self.stop_at
        with (progress_bar((self.stop_at - st.step) * pairs_per_step, "teacher train", "pairs") if shown
              else contextlib.nullcontext()) as bar:
            running, n_logged = 0.0, 0
            first, step_s, fitted_here = st.step, [], False
            while st.step < self.stop_at:
                t_step = time.monotonic()
                for loss in self.optimizer_step():
                    running += loss
                    n_logged += 1
                step_s.append(time.monotonic() - t_step)
                st.step += 1
                if st.step - first == FIT_AFTER and st.horizon is None:
                    self.fit_schedule(float(np.mean(step_s)))
                    fitted_here = st.horizon is not None
                elif st.step - first == REFIT_AFTER and fitted_here:  # the steady pace, without the slow first steps
                    self.fit_schedule(float(np.mean(step_s[FIT_AFTER:])))
                if bar:
                    bar(pairs_per_step)
                if self.main and st.step % tr.log_every == 0:
                    append_log(self.out, {"event": "train", "step": st.step, "loss": running / max(n_logged, 1),
                                          "lr": self.scheduler.get_last_lr()[0]})
                    running, n_logged = 0.0, 0
                over_budget = self.over_budget()
                if st.step % plan.ckpt_every == 0 or st.step == self.stop_at or over_budget:
                    if fitted_here and st.step - first > REFIT_AFTER and st.step < self.stop_at and not over_budget:
                        self.fit_schedule(float(np.mean(step_s[FIT_AFTER:])), evals_due=1)  # the pace drifts: refit here too
                    self.save_checkpoint(self.evaluate_now())
                    self.accelerator.wait_for_everyone()
                if over_budget:
                    if self.main:
                        log.warning("time budget of %.1f min reached at step %d", tr.max_minutes, st.step)
                    break

    def unit_rows(self, m: int) -> tuple[np.ndarray, torch.Tensor | None]:
        """Pair rows of micro-batch ``m`` on this process (+ each row's group number when batches are query groups)."""
        idx = micro_batch_indices(self.plan, m, self.rank, self.tr.seed)
        if self.data.groups is None:
            return idx, None
        parts = [self.data.groups[u] for u in idx]
        gid = torch.cat([torch.full((len(p),), k, dtype=torch.long) for k, p in enumerate(parts)])
        return np.concatenate(parts), gid

    def forward(self, idx: np.ndarray) -> torch.Tensor:
        """The logits of train rows ``idx`` (from their cached prefix states when there are any)."""
        dev = self.accelerator.device
        if self.train_prefix is not None:
            hidden, mask = self.train_prefix.batch(idx)
            return self.raw_model.forward_from(hidden.to(dev), mask.to(dev), self.split)
        enc = self.encoder.collate([self.train_ids[i] for i in idx])
        return self.model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev))

    def optimizer_step(self) -> list[float]:
        """One optimizer step over train.grad_accum micro-batches (dropout seeded from the step); their losses."""
        plan, tr, acc = self.plan, self.tr, self.accelerator
        torch.manual_seed(tr.seed * 1_000_003 + self.state.step * self.world + self.rank)  # dropout: a function of the step
        losses = []
        for j in range(plan.grad_accum):
            idx, gid = self.unit_rows(self.state.step * plan.grad_accum + j)
            y = self.targets[idx].to(acc.device)
            sync = j == plan.grad_accum - 1
            ctx = acc.no_sync(self.model) if not sync and self.world > 1 else contextlib.nullcontext()
            with ctx, acc.autocast():
                logits = self.forward(idx)
                loss = teacher_loss(tr.loss, logits.float(), y, gid.to(acc.device) if gid is not None else None,
                                    tr.bce_weight) / plan.grad_accum
            acc.backward(loss)
            losses.append(float(loss.detach()) * plan.grad_accum)
        if tr.max_grad_norm:
            acc.clip_grad_norm_(self.params, tr.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return losses

    def fit_schedule(self, per_step_s: float, evals_due: int = 0) -> None:
        """With a time budget (train.max_minutes, one process), shorten the LR schedule to the steps that fit it at
        ``per_step_s`` (the run's first FIT_AFTER steps; at REFIT_AFTER refitted on the steps after them, since the first
        steps run slower: measured 4.76 s/step over the first 5 steps of an all-layer Gemma 3 270M run that then ran at
        ~3.2 s/step, which fitted 1,034 steps to an 88-minute budget that held ~1,500; and at each later checkpoint on
        every step since FIT_AFTER, ``evals_due`` = the evaluation about to run there, since the pace drifts: the next such
        run ran 3.05 s/step over steps 6-25 and ~4 s/step after them, so the schedule fitted at step 25 outlasted its
        budget), so the budget's last step is the schedule's last: a run stopped by
        the clock otherwise ends at a high learning rate (measured: a 15-minute run of the demo recipe stopped at step
        242 of 550 with the LR at 65 % of its peak, its dev nDCG@10 0.641 below the untrained model's 0.655)."""
        tr, st = self.tr, self.state
        if not tr.max_minutes or self.world > 1:
            return
        left_s = tr.max_minutes * 60 - self.elapsed() - evals_due * self.eval_s
        fit = max(st.step + 1, steps_in_budget(st.step, self.planned_stop, per_step_s, left_s, self.eval_s, self.plan.ckpt_every))
        if fit == self.stop_at or (st.horizon is None and fit >= self.planned_stop):
            return
        st.horizon = self.stop_at = fit
        self.scheduler = make_scheduler(self.raw_optimizer, tr, st.horizon, st.step)
        if self.main:
            log.info("time budget of %.1f min: %d steps fit at %.2f s/step; the LR schedule now ends at step %d",
                     tr.max_minutes, st.horizon, per_step_s, st.horizon)
            append_log(self.out, {"event": "schedule", "step": st.step, "steps": st.horizon, "s_per_step": round(per_step_s, 3),
                                  "of_planned": self.plan.total_steps})

    def over_budget(self) -> bool:
        """Has the wall-clock budget (train.max_minutes) run out on any process?"""
        budget_s = self.tr.max_minutes * 60 if self.tr.max_minutes else None
        over = budget_s is not None and self.elapsed() >= budget_s
        flag = torch.tensor([1.0 if over else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "max").item() > 0) if self.world > 1 else over

    # checkpoints

    def trainable_now(self) -> dict[str, torch.Tensor]:
        """Trainable weights; under FSDP gathered from every rank (a collective call)."""
        if not self.is_fsdp:
            return trainable_state(self.raw_model)
        names = {n.replace("_fsdp_wrapped_module.", "") for n, p in self.raw_model.named_parameters() if p.requires_grad}
        full = self.accelerator.get_state_dict(self.model)
        return {k: v.float().cpu().contiguous() for k, v in full.items() if k in names}

    def evaluate_now(self) -> dict:
        """The dev metrics now (main process; {} elsewhere)."""
        if self.is_fsdp:  # an FSDP forward is collective: every rank evaluates, rank 0 keeps the numbers
            return self.evaluator(self.model, self.accelerator)
        return self.evaluator(self.raw_model, self.accelerator) if self.main else {}

    def save_checkpoint(self, metrics: dict) -> None:
        """Record this step's dev ``metrics`` (history, best) and write its checkpoint (main process; every rank
        takes part in gathering FSDP weights); older checkpoints but the kept and the best are deleted."""
        weights = self.trainable_now()
        if not self.main:
            return
        st, tr = self.state, self.tr
        if metrics:
            st.dev_logits[st.step] = self.evaluator.last_logits
        st.history.append({"step": st.step, "epoch": round(st.step / self.plan.steps_per_epoch, 4), "dev": metrics})
        st.best = update_best(st.best, st.step, tr.select_metric, metrics)
        self.write_checkpoint(weights)
        append_log(self.out, {"event": "eval", "step": st.step, **{f"dev_{k}": v for k, v in metrics.items()}})
        prune_checkpoints(self.out, tr.keep_checkpoints, st.best)

    def write_checkpoint(self, weights: dict[str, torch.Tensor]) -> None:
        """Checkpoint ``step-NNNNNNN``: trainables, optimizer + scheduler, and the state (written atomically)."""
        st = self.state
        with atomic_path(checkpoint_path(self.out, st.step)) as tmp:
            tmp.mkdir()
            save_file(weights, str(tmp / TRAINABLE_FILE))
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}, tmp / OPTIM_FILE)
            (tmp / STATE_FILE).write_text(json.dumps({"step": st.step, "total_steps": self.plan.total_steps, "recipe": self.start.key,
                                                      "history": st.history, "best": st.best, "elapsed_s": self.elapsed(),
                                                      "schedule_steps": st.horizon}, indent=1))

    # the artifact (main process)

    def finalize(self) -> None:
        """The artifact: the best dev checkpoint (train.select_metric) if selection is on, else the last weights,
        with the teacher prior and the calibration fitted on dev."""
        st, tc, tr, dev_df = self.state, self.tc, self.tr, self.data.dev
        chosen = self.restore_best()
        final_metrics = next((h["dev"] for h in reversed(st.history) if h["step"] == chosen), {})
        untrained = next((h["dev"] for h in st.history if h["step"] == 0), None)
        prior = None
        if tc.prior_student and len(dev_df) and not self.is_fsdp:
            if chosen not in st.dev_logits:  # kept from before a resume: score dev with the restored weights
                st.dev_logits[chosen] = self.rescore_dev()
            prior = fit_prior(dev_df, st.dev_logits[chosen], tc.prior_student, tc.prior_weights, runtime=self.start.runtime)
            log.info("teacher prior %s: dev nDCG@10 by LLM weight %s -> w = %g", tc.prior_student, prior["dev_ndcg10"], prior["weight"])
        calibration = None
        if not self.is_fsdp and tr.eval_split == "dev":  # fitted on dev only, never on the split a report reads
            calibration = fit_calibration(dev_df, st.dev_logits, chosen, prior, self.recipe, self.rescore_dev,
                                          self.start.runtime)
        write_artifact(self.out, self.raw_model, self.tokenizer, self.recipe, self.resolved,
                       self.manifest_fields(chosen, final_metrics, untrained, prior, calibration), calibration)

    def restore_best(self) -> int:
        """Load the best checkpoint's weights when train.select_best picks another step; the chosen step."""
        st = self.state
        if self.tr.select_best and st.best is not None and st.best["step"] != st.step and st.step > 0:
            ck = checkpoint_path(self.out, st.best["step"])
            if ck.is_dir():
                _, weights, _ = read_checkpoint(ck)
                load_trainables(self.raw_model, weights)
                return st.best["step"]
        return st.step

    def rescore_dev(self) -> np.ndarray:
        """The dev logits of the model as it is now."""
        self.evaluator(self.raw_model, self.accelerator)
        return self.evaluator.last_logits

    def manifest_fields(self, chosen: int, final_metrics: dict, untrained: dict | None, prior: dict | None,
                        calibration) -> dict[str, Any]:
        """The run's fields of the teacher manifest."""
        st, plan, dev_df = self.state, self.plan, self.data.dev
        return {
            "steps": st.step, "total_steps": plan.total_steps, "chosen_step": chosen,
            "epochs_done": round(st.step / plan.steps_per_epoch, 4), "finished": st.step >= plan.total_steps,
            "processes": self.world, "precision": "bf16" if self.start.dtype == torch.bfloat16 else "fp32",
            "train_pairs": len(self.train_ids), "train_units": plan.n_train, "dev_pairs": int(len(dev_df)),
            "dev_queries": int(dev_df["query_id"].nunique()) if len(dev_df) else 0, "select_metric": self.tr.select_metric,
            "prefix_cache_s": round(self.prefix_s, 1),
            "score_head": score_head_info(self.tc, self.tokenizer),
            "dev_metrics": final_metrics, "dev_metrics_untrained": untrained, "history": st.history, "prior": prior,
            "calibration": calibration_summary(calibration),
            "train_minutes": round(self.elapsed() / 60, 2)}


def train_teacher(recipe: Recipe, output_dir: str | os.PathLike, resume: bool = True,
                  max_steps: int | None = None, max_minutes: float | None = None, progress: bool = True, *,
                  runtime: Runtime | None = None) -> Path:
    """Train the teacher of ``recipe`` (its data/teacher/train sections) into ``output_dir`` (in-process or
    under ``accelerate launch``).

    ``max_steps`` / ``max_minutes`` override the recipe's budget: training stops after a checkpoint
    once either is reached and still writes a complete artifact (``max_steps=0`` writes the
    untrained model). With ``resume`` a rerun continues from the last checkpoint in
    ``output_dir/checkpoints``. Returns ``output_dir``; its manifest.json is written last.
    """
    t_start = time.monotonic()
    recipe = budgeted(recipe, max_steps, max_minutes)
    out = Path(output_dir)
    start = launch(recipe, out, resume, runtime or Runtime())
    if already_trained(start, out, recipe.train):
        return out
    if not resume and start.main and (out / CKPT_DIR).exists():
        shutil.rmtree(out / CKPT_DIR)
    start.accelerator.wait_for_everyone()
    TeacherTraining(recipe, out, start, progress, t_start).run()
    start.accelerator.wait_for_everyone()
    return out


def score_head_info(tc, tokenizer) -> dict[str, Any]:
    """What the score is, for exporters: the head kind, and for ``lm`` the answer tokens/ids and where the row lives."""
    info: dict[str, Any] = {"kind": tc.head, "file": "head.safetensors"}
    if tc.head == "lm":
        info.update(answer_tokens=list(tc.answer_tokens), answer_token_ids=answer_token_ids(tokenizer, tc),
                    row="net.0.weight", bias="net.0.bias",
                    definition="logit = (lm_head.weight[yes] - lm_head.weight[no]) . final_norm(h_last) + bias; "
                               "the row in head.safetensors is that difference (trained only if lm_row_trainable)")
    return info


def fit_calibration(dev_df, dev_logits: dict, chosen: int, prior: dict | None, recipe: Recipe, rescore,
                    runtime: Runtime | None = None):
    """The kept checkpoint's calibration on dev (its dev logits, blended with the prior as served), or None
    when dev is empty or too small (a warning: `reldistill calibrate` fits it later)."""
    if not len(dev_df):
        return None
    logits = dev_logits.get(chosen)
    if logits is None:  # kept from before a resume: score dev with the restored weights
        logits = rescore()
    logits = np.asarray(logits, dtype=np.float64)
    blend = Prior.from_manifest(prior)
    if blend is not None:
        logits = blend.apply(dev_df["query"].astype(str).tolist(), dev_df["text"].astype(str).tolist(), logits,
                             runtime).astype(np.float64)
    try:
        return fit_teacher_calibration(dev_df, 1.0 / (1.0 + np.exp(-logits)), recipe.data)
    except UserError as e:
        log.warning("no calibration fitted: %s", e)
        return None


def write_artifact(out: Path, model, tokenizer, recipe: Recipe, resolved, fields: dict, calibration=None) -> None:
    """Replace the artifact files in ``out`` (manifest removed first, calibration.json beside, manifest written last)."""
    (out / "manifest.json").unlink(missing_ok=True)
    (out / CALIBRATION_FILE).unlink(missing_ok=True)
    if calibration is not None:
        save_calibration(out, calibration)
    tmp = out / ".artifact.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_trainables(tmp, model, tokenizer, recipe.teacher)
    for entry in tmp.iterdir():
        dest = out / entry.name
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(entry, dest)
    tmp.rmdir()
    try:
        fingerprint = data_fingerprint(recipe.data.path)
    except OSError:
        fingerprint = {}
    write_json(out / "metrics.json", {k: fields[k] for k in ("dev_metrics", "dev_metrics_untrained", "steps", "chosen_step")})
    write_manifest(out, KIND, base_model=resolved.hub_id or resolved.path, base_source=resolved.source,
                   base_gguf_file=resolved.gguf_file, base_inside=False, teacher=dataclasses.asdict(recipe.teacher),
                   train=dataclasses.asdict(recipe.train), data=dataclasses.asdict(recipe.data),
                   data_fingerprint=fingerprint, recipe_file=str(recipe.path) if recipe.path else None, **fields)
