"""Teacher training: a small accelerate loop (BCEWithLogits on soft labels, AdamW) with exact resume.

Why our own accelerate loop rather than HF Trainer: a checkpoint holds only the trainable
parameters (LoRA + head, 13.6M+ on Llama-3.2-1B instead of the 1.2B frozen base), the held-out
eval is a per-query ranking metric (nDCG of each query's judged candidates) plus MSE, and a
wall-clock budget must stop after a checkpoint and still write a usable artifact. The loop is a
deterministic function of (recipe, step): micro-batch ``m`` comes from a seeded permutation of
epoch ``m // micro_per_epoch`` and dropout is reseeded from the step, so a resumed run takes
exactly the same path as an uninterrupted one. accelerate supplies the device, DDP/FSDP,
bf16 autocast and process sharding (`accelerate launch --config_file configs/accelerate/...`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reldistill.artifacts import atomic_path, check_replaceable, data_fingerprint, write_json, write_manifest
from reldistill.calibration import CALIBRATION_FILE, save_calibration
from reldistill.calibration import summary as calibration_summary
from reldistill.errors import UserError
from reldistill.recipe import Recipe, override
from reldistill.settings import Runtime
from reldistill.teacher.artifact import KIND, save_trainables

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoints"
STATE_FILE = "state.json"
TRAINABLE_FILE = "trainable.safetensors"
OPTIM_FILE = "optimizer.pt"
LOG_FILE = "train_log.jsonl"
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


def _recipe_key(recipe: Recipe) -> dict[str, Any]:
    train = {k: v for k, v in dataclasses.asdict(recipe.train).items() if k not in RESUME_FREE}
    teacher = {k: v for k, v in dataclasses.asdict(recipe.teacher).items() if k not in PRIOR_FIELDS}
    return {"teacher": teacher, "train": train, "data": dataclasses.asdict(recipe.data)}


def _checkpoints(out: Path) -> list[Path]:
    d = out / CKPT_DIR
    return sorted((p for p in d.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")), key=lambda p: int(p.name.split("-")[1])) if d.is_dir() else []


def _read_checkpoint(ck: Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(state, trainable tensors, optimizer+scheduler state); anything unreadable is a UserError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _append_log(out: Path, record: dict) -> None:
    """One event (+ its wall-clock ``time``, so step times can be read off the log) appended to the train log."""
    with (out / LOG_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")


def better(metric: str, new: float, old: float) -> bool:
    """Is ``new`` a better dev value of ``metric`` than ``old`` (lower MSE, higher nDCG)?"""
    return new < old if metric == "mse" else new > old


class _Evaluator:
    """Scores the held-out pairs with the model being trained (main process) → MSE + nDCG over whole queries.

    With ``prefix`` (cached frozen-prefix states of the same pairs) only layers ``split..`` run.
    """

    def __init__(self, df, encoder, batch_size: int):
        from reldistill.teacher.inputs import length_buckets

        self.df = df
        self.encoder = encoder
        self.ids = encoder.encode(df["query"].tolist(), df["text"].tolist()) if len(df) else []
        self.batches = length_buckets([len(r) for r in self.ids], batch_size)
        self.prefix, self.split = None, 0

    def use_prefix(self, prefix, split: int) -> None:
        self.prefix, self.split = prefix, split

    @torch.inference_mode()
    def __call__(self, model, accelerator) -> dict[str, Any]:
        from reldistill.teacher.metrics import evaluate_scores

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
    from accelerate import Accelerator

    from reldistill.precision import reset_accelerate_state
    from reldistill.precision import resolve_dtype
    from reldistill.teacher.backbone import set_cpu_threads
    from reldistill.teacher.inputs import PairEncoder, choose_pad_token
    from reldistill.teacher.losses import teacher_loss
    from reldistill.teacher.model import num_layers
    from reldistill.teacher.pairs import add_random_negatives, cap_by_query, cap_queries, query_groups, split_pairs
    from reldistill.teacher.teacher import build_cross_encoder

    t_start = time.monotonic()
    if max_steps is not None and max_steps < 0:
        raise UserError(f"--max-steps must be >= 0, got {max_steps}.")
    if max_minutes is not None and max_minutes <= 0:
        raise UserError(f"--max-minutes must be positive, got {max_minutes}.")
    recipe = dataclasses.replace(recipe, train=override(recipe.train, max_steps=max_steps, max_minutes=max_minutes))
    tc, tr = recipe.teacher, recipe.train
    out = Path(output_dir)
    runtime = runtime or Runtime()
    threads = set_cpu_threads(tr.cpu_threads, runtime)

    dtype = resolve_dtype(tr.precision, runtime=runtime)
    use_bf16 = dtype == torch.bfloat16
    # no GPU: CPU processes (gloo) — `accelerate launch --multi_gpu --num_processes N` spawns them via torchrun
    reset_accelerate_state(runtime)  # an earlier in-process Trainer may have fixed another precision
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    # never train into (and later write over) a folder that is neither a teacher nor a teacher being trained;
    # only the main process looks (another rank could see the main one's first files; a refusal there ends the launch)
    if main and not (out.is_dir() and {p.name for p in out.iterdir()} <= {CKPT_DIR, LOG_FILE, ".artifact.tmp"}):
        check_replaceable(out, KIND)

    key = _recipe_key(recipe)
    ckpts = _checkpoints(out) if resume else []
    resume_from = _read_checkpoint(ckpts[-1]) if ckpts else None  # a broken checkpoint fails before any heavy work
    if resume_from and resume_from[0].get("recipe") != json.loads(json.dumps(key)):
        raise UserError(f"checkpoints in {out / CKPT_DIR} were made with a different recipe — rerun with --no-resume or another --output.")
    if resume_from and (out / "manifest.json").is_file():
        st = resume_from[0]
        target = min(st["total_steps"], tr.max_steps if tr.max_steps is not None else st["total_steps"])
        spent = tr.max_minutes is not None and st.get("elapsed_s", 0.0) >= tr.max_minutes * 60
        if st["step"] >= target or spent:  # finished (or its budget is spent): nothing to do
            if main:
                log.warning("%s is already trained (step %d of %d) — rerun with --no-resume to train again",
                            out, st["step"], st["total_steps"])
            return out
    if not resume and main and (out / CKPT_DIR).exists():
        shutil.rmtree(out / CKPT_DIR)
    accelerator.wait_for_everyone()

    # data and model (all processes build the same things)
    pairs = split_pairs(recipe.data, tr.include_sparse)
    train_df = pairs["train"]
    # dev: whole queries that nDCG can rank (>= 2 judged candidates), capped by query count, seeded
    dev_df = cap_by_query(cap_queries(pairs.get(tr.eval_split, pairs["dev"]), tr.eval_max_queries, tr.seed),
                          tr.eval_max_pairs, tr.seed)
    qgroups = None
    if tr.group_size:  # units are query groups: a query's candidates (+ random negatives) stay together
        train_df = add_random_negatives(train_df, tr.group_negatives, tr.seed)
        qgroups = query_groups(train_df, tr.group_size, tr.seed)
    if tr.train_layers and world > 1:
        raise UserError("train.train_layers (cached prefix) trains in one process — drop accelerate launch or set train_layers: 0.")
    torch.manual_seed(tr.seed)
    model, tokenizer, resolved = build_cross_encoder(tc, dtype, train_layers=tr.train_layers, runtime=runtime)
    choose_pad_token(tokenizer)
    for p in model.parameters():  # trainable params stay fp32 (bf16 autocast runs the maths)
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if tr.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    encoder = PairEncoder(tokenizer, tc.template, tc.max_length, tc.padding_side)
    train_ids = encoder.encode(train_df["query"].tolist(), train_df["text"].tolist())
    targets = torch.tensor(train_df["soft_label"].to_numpy(), dtype=torch.float32)
    n_units = len(qgroups) if qgroups is not None else len(train_ids)
    plan = make_plan(n_units, world, tr.batch_size, tr.grad_accum, tr.epochs, tr.checkpoint_fraction)
    stop_at = plan.total_steps if tr.max_steps is None else min(plan.total_steps, tr.max_steps)

    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    head_ids = {id(p) for p in model.head.parameters()}
    groups = [{"params": [p for p in params if id(p) not in head_ids], "lr": tr.lr},
              {"params": [p for p in params if id(p) in head_ids], "lr": tr.head_lr or tr.lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=tr.lr, weight_decay=tr.weight_decay)
    scheduler = get_scheduler(tr.lr_schedule, optimizer, num_warmup_steps=round(tr.warmup_ratio * plan.total_steps),
                              num_training_steps=plan.total_steps)

    # resume: the last checkpoint's trainables + optimizer + scheduler; the step fixes the data order
    step, history, best, elapsed_before = 0, [], None, 0.0
    if resume_from:
        state, weights, optim = resume_from
        missing = set(_trainable_state(model)) - set(weights)
        if missing:
            raise UserError(f"checkpoint {ckpts[-1]} lacks {sorted(missing)[0]} — it is from another model; rerun with --no-resume.")
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in weights:
                    p.copy_(weights[n])
        optimizer.load_state_dict(optim["optimizer"])
        scheduler.load_state_dict(optim["scheduler"])
        step, history, best = state["step"], state.get("history", []), state.get("best")
        elapsed_before = float(state.get("elapsed_s", 0.0))
        if main:
            log.warning("resuming from %s (step %d of %d)", ckpts[-1].name, step, plan.total_steps)

    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    from accelerate.utils import DistributedType

    is_fsdp = accelerator.distributed_type == DistributedType.FSDP
    evaluator = _Evaluator(dev_df, encoder, tr.eval_batch_size)
    split, train_prefix, prefix_s = 0, None, 0.0
    if tr.train_layers and tr.cache_prefix:  # the frozen lower layers run once per pair; training and dev eval start from their states
        from reldistill.gguf_cache import cache_root
        from reldistill.teacher.prefix_cache import cache_key, prefix_states

        t_prefix = time.monotonic()
        split = num_layers(raw_model.backbone) - tr.train_layers
        cdir = Path(tr.cache_dir) if tr.cache_dir else cache_root(runtime) / "teacher-prefix"
        base_id = f"{resolved.hub_id or resolved.path}:{resolved.gguf_file}"
        pdtype = next(raw_model.backbone.parameters()).dtype
        train_prefix = prefix_states(raw_model, encoder, train_ids, split, tr.eval_batch_size,
                                     cdir / f"{cache_key(base_id, split, pdtype, train_ids)}.safetensors",
                                     accelerator.autocast, "teacher prefix cache (train)" if progress and main else None)
        if len(dev_df):
            evaluator.use_prefix(prefix_states(raw_model, encoder, evaluator.ids, split, tr.eval_batch_size,
                                               cdir / f"{cache_key(base_id, split, pdtype, evaluator.ids)}.safetensors",
                                               accelerator.autocast, "teacher prefix cache (dev)" if progress and main else None), split)
        prefix_s = time.monotonic() - t_prefix

    def unit_rows(m: int) -> tuple[np.ndarray, torch.Tensor | None]:
        """Pair rows of micro-batch ``m`` on this process (+ each row's group number when batches are query groups)."""
        idx = micro_batch_indices(plan, m, rank, tr.seed)
        if qgroups is None:
            return idx, None
        parts = [qgroups[u] for u in idx]
        gid = torch.cat([torch.full((len(p),), k, dtype=torch.long) for k, p in enumerate(parts)])
        return np.concatenate(parts), gid

    start_metrics = {}
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if step == 0 and not history:
            (out / LOG_FILE).unlink(missing_ok=True)
            start_metrics = evaluator(raw_model, accelerator) if tr.eval_at_start and not is_fsdp else {}
        units = f"{plan.n_train:,} query groups of <= {tr.group_size} ({len(train_ids):,} pairs)" if qgroups is not None else f"{plan.n_train:,} train pairs"
        print(f"teacher train: {units}, {tr.eval_split} {dev_df['query_id'].nunique():,} whole queries ({len(dev_df):,} pairs), "
              f"loss {tr.loss}{f' + {tr.bce_weight} bce' if tr.loss != 'bce' and tr.bce_weight else ''}, "
              f"{f'top {tr.train_layers} layers on a cached prefix ({prefix_s:.0f} s), ' if tr.train_layers else ''}{world} process(es), "
              f"{plan.steps_per_epoch} steps/epoch, checkpoint every {plan.ckpt_every} steps, "
              f"{'stop at' if stop_at < plan.total_steps else 'total'} {stop_at}/{plan.total_steps} steps, "
              f"precision {'bf16' if use_bf16 else 'fp32'}, {threads} CPU thread(s)/process", flush=True)

    def trainable_now() -> dict[str, torch.Tensor]:
        """Trainable weights; under FSDP gathered from every rank (a collective call)."""
        if not is_fsdp:
            return _trainable_state(raw_model)
        names = {n.replace("_fsdp_wrapped_module.", "") for n, p in raw_model.named_parameters() if p.requires_grad}
        full = accelerator.get_state_dict(model)
        return {k: v.float().cpu().contiguous() for k, v in full.items() if k in names}

    def evaluate_now() -> dict:
        if is_fsdp:  # an FSDP forward is collective: every rank evaluates, rank 0 keeps the numbers
            return evaluator(model, accelerator)
        return evaluator(raw_model, accelerator) if main else {}

    dev_logits: dict[int, np.ndarray] = {}  # this process's dev logits per checkpoint step (the prior is fitted on the kept one)

    def save_checkpoint(metrics: dict) -> None:
        nonlocal best
        weights = trainable_now()
        if not main:
            return
        if metrics:
            dev_logits[step] = evaluator.last_logits
        rec = {"step": step, "epoch": round(step / plan.steps_per_epoch, 4), "dev": metrics}
        history.append(rec)
        score = metrics.get(tr.select_metric)
        if score is not None and (best is None or best.get("metric") != tr.select_metric
                                  or better(tr.select_metric, score, best["value"])):
            best = {"step": step, "metric": tr.select_metric, "value": score}
        final = out / CKPT_DIR / f"step-{step:07d}"
        from safetensors.torch import save_file

        with atomic_path(final) as tmp:
            tmp.mkdir()
            save_file(weights, str(tmp / TRAINABLE_FILE))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / OPTIM_FILE)
            elapsed = elapsed_before + time.monotonic() - t_start
            (tmp / STATE_FILE).write_text(json.dumps({"step": step, "total_steps": plan.total_steps, "recipe": key,
                                                      "history": history, "best": best, "elapsed_s": elapsed}, indent=1))
        _append_log(out, {"event": "eval", "step": step, **{f"dev_{k}": v for k, v in metrics.items()}})
        keep = {c for c in _checkpoints(out)[-max(tr.keep_checkpoints, 1):]}
        for c in _checkpoints(out):
            if c not in keep and not (best and c.name == f"step-{best['step']:07d}"):
                shutil.rmtree(c, ignore_errors=True)

    if start_metrics:  # the untrained model is a checkpoint too (a zero-shot LM head may beat early steps)
        save_checkpoint(start_metrics)

    # the loop
    model.train()
    budget_s = tr.max_minutes * 60 if tr.max_minutes else None
    bar = None
    if main and progress and step < stop_at:
        from reldistill.progress import progress_bar

        bar_ctx = progress_bar((stop_at - step) * plan.micro_batch * world * plan.grad_accum, "teacher train", "pairs")
        bar = bar_ctx.__enter__()
    try:
        running, n_logged = 0.0, 0
        while step < stop_at:
            torch.manual_seed(tr.seed * 1_000_003 + step * world + rank)  # dropout: a function of the step
            for j in range(plan.grad_accum):
                idx, gid = unit_rows(step * plan.grad_accum + j)
                y = targets[idx].to(accelerator.device)
                sync = j == plan.grad_accum - 1
                ctx = accelerator.no_sync(model) if not sync and world > 1 else _null()
                with ctx, accelerator.autocast():
                    if train_prefix is not None:
                        hidden, mask = train_prefix.batch(idx)
                        logits = raw_model.forward_from(hidden.to(accelerator.device), mask.to(accelerator.device), split)
                    else:
                        enc = encoder.collate([train_ids[i] for i in idx])
                        logits = model(enc["input_ids"].to(accelerator.device), enc["attention_mask"].to(accelerator.device))
                    loss = teacher_loss(tr.loss, logits.float(), y, gid.to(accelerator.device) if gid is not None else None,
                                        tr.bce_weight) / plan.grad_accum
                accelerator.backward(loss)
                running += float(loss.detach()) * plan.grad_accum
                n_logged += 1
            if tr.max_grad_norm:
                accelerator.clip_grad_norm_(params, tr.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if bar:
                bar(plan.micro_batch * world * plan.grad_accum)
            if main and step % tr.log_every == 0:
                _append_log(out, {"event": "train", "step": step, "loss": running / max(n_logged, 1),
                                  "lr": scheduler.get_last_lr()[0]})
                running, n_logged = 0.0, 0
            over_budget = budget_s is not None and elapsed_before + time.monotonic() - t_start >= budget_s
            flag = torch.tensor([1.0 if over_budget else 0.0], device=accelerator.device)
            over_budget = bool(accelerator.reduce(flag, "max").item() > 0) if world > 1 else over_budget
            if step % plan.ckpt_every == 0 or step == stop_at or over_budget:
                save_checkpoint(evaluate_now())
                accelerator.wait_for_everyone()
            if over_budget:
                if main:
                    log.warning("time budget of %.1f min reached at step %d", tr.max_minutes, step)
                break
    finally:
        if bar is not None:
            bar_ctx.__exit__(None, None, None)

    # the artifact: the best dev checkpoint (train.select_metric) if selection is on, else the last weights
    if main:
        chosen = step
        if tr.select_best and best is not None and best["step"] != step and step > 0:
            ck = out / CKPT_DIR / f"step-{best['step']:07d}"
            if ck.is_dir():
                _, weights, _ = _read_checkpoint(ck)
                with torch.no_grad():
                    for n, p in raw_model.named_parameters():
                        if n in weights:
                            p.copy_(weights[n])
                chosen = best["step"]
        final_metrics = next((h["dev"] for h in reversed(history) if h["step"] == chosen), {})
        untrained = next((h["dev"] for h in history if h["step"] == 0), None)
        prior = None
        if tc.prior_student and len(dev_df) and not is_fsdp:
            from reldistill.teacher.prior import fit_prior

            if chosen not in dev_logits:  # kept from before a resume: score dev with the restored weights
                evaluator(raw_model, accelerator)
                dev_logits[chosen] = evaluator.last_logits
            prior = fit_prior(dev_df, dev_logits[chosen], tc.prior_student, tc.prior_weights, runtime=runtime)
            log.info("teacher prior %s: dev nDCG@10 by LLM weight %s -> w = %g", tc.prior_student, prior["dev_ndcg10"], prior["weight"])
        calibration = None
        if not is_fsdp and tr.eval_split == "dev":  # fitted on dev only, never on the split a report reads
            calibration = _fit_calibration(dev_df, dev_logits, chosen, prior, recipe,
                                           lambda: (evaluator(raw_model, accelerator), evaluator.last_logits)[1], runtime)
        _write_artifact(out, raw_model, tokenizer, recipe, resolved, {
            "steps": step, "total_steps": plan.total_steps, "chosen_step": chosen,
            "epochs_done": round(step / plan.steps_per_epoch, 4), "finished": step >= plan.total_steps,
            "processes": world, "precision": "bf16" if use_bf16 else "fp32",
            "train_pairs": len(train_ids), "train_units": plan.n_train, "dev_pairs": int(len(dev_df)),
            "dev_queries": int(dev_df["query_id"].nunique()) if len(dev_df) else 0, "select_metric": tr.select_metric,
            "prefix_cache_s": round(prefix_s, 1),
            "score_head": score_head_info(tc, tokenizer),
            "dev_metrics": final_metrics, "dev_metrics_untrained": untrained, "history": history, "prior": prior,
            "calibration": calibration_summary(calibration),
            "train_minutes": round((elapsed_before + time.monotonic() - t_start) / 60, 2)}, calibration)
    accelerator.wait_for_everyone()
    return out


def score_head_info(tc, tokenizer) -> dict[str, Any]:
    """What the score is, for exporters: the head kind, and for ``lm`` the answer tokens/ids and where the row lives."""
    info: dict[str, Any] = {"kind": tc.head, "file": "head.safetensors"}
    if tc.head == "lm":
        from reldistill.teacher.model import answer_token_ids

        info.update(answer_tokens=list(tc.answer_tokens), answer_token_ids=answer_token_ids(tokenizer, tc),
                    row="net.0.weight", bias="net.0.bias",
                    definition="logit = (lm_head.weight[yes] - lm_head.weight[no]) . final_norm(h_last) + bias; "
                               "the row in head.safetensors is that difference (trained only if lm_row_trainable)")
    return info


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _fit_calibration(dev_df, dev_logits: dict, chosen: int, prior: dict | None, recipe: Recipe, rescore,
                     runtime: Runtime | None = None):
    """The kept checkpoint's calibration on dev (its dev logits, blended with the prior as served), or None
    when dev is empty or too small (a warning: `reldistill calibrate` fits it later)."""
    from reldistill.teacher.calibrate import fit_teacher_calibration
    from reldistill.teacher.prior import Prior

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


def _write_artifact(out: Path, model, tokenizer, recipe: Recipe, resolved, fields: dict, calibration=None) -> None:
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
