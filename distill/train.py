"""Distil teacher scores into a sentence-transformers bi-encoder (and the human-labels-only baseline).

SentenceTransformerTrainer with a selectable loss from sentence-transformers: MarginMSELoss over
(query, a, b) teacher margins (default), DistillKLDivLoss over candidate lists, pointwise MSE on cosine
(CosineSimilarityLoss), optionally mixed with in-batch-negative MultipleNegativesRankingLoss. The dev
split is evaluated every epoch (full-catalog graded nDCG@10); the best checkpoint is kept; checkpoints
live beside the output (``<out>.checkpoints``) and a rerun resumes from the last one. The output is a
plain sentence-transformers folder plus manifest.json (teacher, data fingerprint, loss, config, dev scores).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from reldistill.artifacts import (atomic_path, check_replaceable, data_fingerprint, file_fingerprint, read_manifest,
                                  write_json, write_manifest)
from reldistill.calibration import save_calibration, summary
from reldistill.config import DataConfig, to_dict
from reldistill.data import load_esci, normalise_queries
from reldistill.errors import UserError
from reldistill.precision import reset_accelerate_state, student_dtype
from reldistill.recipe.distill import DistillConfig
from reldistill.settings import Runtime
from reldistill.student.calibrate import fit_student_calibration
from reldistill.student.catalog_vectors import save_vectors
from reldistill.student.dev_eval import evaluate_student
from reldistill.student.encode import load_student, set_max_seq_length

from .examples import blended_targets, build_rows
from .interchange import read_flag_jsonl, read_st_dataset
from .mine import with_dev_split
from .scores import check_scores_current, load_scores

log = logging.getLogger(__name__)
KIND = "student"


def _weighted(loss, weight: float):
    """``loss`` scaled by ``weight`` (for mixing MNRL into a distillation loss)."""
    import torch

    class WeightedLoss(torch.nn.Module):
        def __init__(self, inner, w):
            super().__init__()
            self.inner, self.weight = inner, w
            self.model = inner.model

        def forward(self, features, labels):
            return self.weight * self.inner(features, labels)

    return loss if weight == 1.0 else WeightedLoss(loss, weight)


def make_losses(model, cfg: DistillConfig, names: list[str]) -> dict:
    """sentence-transformers loss modules for the row sets in ``names`` ('distill', 'mnrl')."""
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.util import pairwise_cos_sim

    out = {}
    if cfg.loss == "margin-mse":
        out["distill"] = losses.MarginMSELoss(model, similarity_fct=pairwise_cos_sim)
    elif cfg.loss == "kl":
        out["distill"] = losses.DistillKLDivLoss(model, similarity_fct=pairwise_cos_sim, temperature=cfg.kl_temperature)
    else:
        out["distill"] = losses.CosineSimilarityLoss(model)
    if "mnrl" in names:
        out["mnrl"] = _weighted(losses.MultipleNegativesRankingLoss(model), cfg.mnrl_weight)
    return {k: v for k, v in out.items() if k in names}


def load_data(data_cfg: DataConfig):
    """The ESCI data of ``data_cfg`` and its judged examples with the dev split carved (as mining carved it)."""
    data = load_esci(data_cfg)
    return data, with_dev_split(data, data_cfg.dev_fraction, data_cfg.seed)


def _train_only(df: pd.DataFrame, examples: pd.DataFrame) -> pd.DataFrame:
    """Drop rows whose query is a dev/test query (by id or normalised text): selection and test stay unseen."""
    held = examples[examples["split"] != "train"]
    leak = df["query_id"].isin(set(held["query_id"])) | normalise_queries(df["query"]).isin(set(normalise_queries(held["query"])))
    if leak.any():
        log.warning("ignoring %d scored pair(s) of dev/test queries", int(leak.sum()))
    return df[~leak].reset_index(drop=True)


def _human_positives(examples: pd.DataFrame) -> pd.DataFrame:
    """Judged train pairs whose soft label is the maximum (Exact): in-batch-negative positives."""
    train = examples[examples["split"] == "train"]
    return train[train["soft_label"] >= train["soft_label"].max()][["query", "text"]]


def checkpoint_dir(out_dir: Path) -> Path:
    """Where the trainer's checkpoints of the student written to ``out_dir`` live: ``<out_dir>.checkpoints`` beside it."""
    return out_dir.parent / f"{out_dir.name}.checkpoints"


def _remove_checkpoints(ckpt_dir: Path) -> None:
    """Delete ``ckpt_dir`` only when it is ours (holds the run.json marker, or nothing); else one UserError."""
    if not ckpt_dir.exists():
        return
    if ckpt_dir.is_dir() and ((ckpt_dir / "run.json").is_file() or not any(ckpt_dir.iterdir())):
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        return
    raise UserError(f"{ckpt_dir} exists but does not hold student checkpoints (no run.json) — refusing to delete it; "
                    "move it away or pass another --output.")


def last_checkpoint(ckpt_dir: Path, fingerprint: dict) -> str | None:
    """The latest checkpoint of an interrupted run with the same inputs, else None (stale ones are removed)."""
    from transformers.trainer_utils import get_last_checkpoint

    marker = ckpt_dir / "run.json"
    if not ckpt_dir.is_dir():
        return None
    try:
        same = json.loads(marker.read_text()) == json.loads(json.dumps(fingerprint, default=str))
    except (OSError, json.JSONDecodeError):
        same = False
    if not same:
        _remove_checkpoints(ckpt_dir)
        log.warning("%s held checkpoints of another run — starting afresh", ckpt_dir)
        return None
    return get_last_checkpoint(str(ckpt_dir))


def fit(rows: dict[str, dict[str, list]], out_dir: str | Path, cfg: DistillConfig, data, examples: pd.DataFrame,
        manifest_fields: dict, resume: bool = True, force: bool = False, data_cfg: DataConfig | None = None, *,
        runtime: Runtime | None = None) -> Path:
    """Train ``cfg.student`` on ``rows`` with SentenceTransformerTrainer; write the best model + manifest to ``out_dir``
    (``runtime``: the student precision when ``cfg.precision`` is auto, and how its dev encodes run)."""
    import torch
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformerTrainer

    out_dir, runtime = Path(out_dir), runtime or Runtime()
    torch.manual_seed(cfg.seed)
    model = load_student(cfg.student, backend="torch", runtime=runtime)  # trained: PyTorch weights
    set_max_seq_length(model, cfg.max_seq_length)
    datasets = {k: Dataset.from_dict(v) for k, v in rows.items()}
    losses = make_losses(model, cfg, list(datasets))
    train_ds = DatasetDict(datasets) if len(datasets) > 1 else datasets["distill"]
    loss = losses if len(datasets) > 1 else losses["distill"]
    evaluator, base_dev = _dev_evaluator(model, cfg, examples, data)
    ckpt_dir, last = _checkpoints(out_dir, cfg, rows, manifest_fields, resume)

    bf16 = student_dtype(cfg.precision, runtime) == torch.bfloat16
    reset_accelerate_state(runtime)  # the teacher (or another student) may have fixed another precision in-process
    trainer = SentenceTransformerTrainer(model=model, args=_training_args(cfg, ckpt_dir, evaluator is not None, bf16),
                                         train_dataset=train_ds, loss=loss, evaluator=evaluator)
    result = trainer.train(resume_from_checkpoint=last)
    best_dev = _best_from_history(evaluator, trainer) if evaluator is not None else None

    with atomic_path(out_dir, force=force) as tmp:
        model.save(str(tmp))
        _save_best_vectors(tmp, evaluator, trainer.state.best_model_checkpoint, data.products, runtime)
        calibration = _calibrate(tmp, model, examples, data_cfg)
        write_manifest(tmp, KIND, student_base=cfg.student, loss=cfg.loss if manifest_fields.get("teacher") else f"{cfg.loss} (human labels)",
                       data={"path": str(Path(manifest_fields.get("data_path", "")).resolve()), "fingerprint": data_fingerprint(manifest_fields["data_path"])},
                       config=to_dict(cfg), train_rows={k: len(v["query"]) for k, v in rows.items()},
                       steps=int(result.global_step), train_loss=float(result.training_loss),
                       best={m: best_dev[m] for m in ("ndcg@10", "recall@100")} if best_dev else None,
                       dev={"split": cfg.eval_split, "base": base_dev, "best": best_dev,
                            "history": evaluator.history if evaluator is not None else [],
                            "best_checkpoint": trainer.state.best_model_checkpoint},
                       calibration=calibration,
                       **{k: v for k, v in manifest_fields.items() if k != "data_path"})
    _remove_checkpoints(ckpt_dir)
    if base_dev and best_dev and best_dev["ndcg@10"] < base_dev["ndcg@10"]:
        log.warning("the trained student (dev nDCG@10 %.4f) is below the base model (%.4f)", best_dev["ndcg@10"], base_dev["ndcg@10"])
    return out_dir


def _dev_evaluator(model, cfg: DistillConfig, examples: pd.DataFrame, data):
    """(the dev retrieval evaluator that picks the checkpoint, the base model's dev figures): (None, None) when
    ``cfg.eval_split`` is none; the base figures only with ``cfg.eval_base``."""
    from reldistill.student.dev_evaluator import DevRetrievalEvaluator  # sentence-transformers, as in fit

    if cfg.eval_split == "none":
        return None, None
    evaluator, base_dev = DevRetrievalEvaluator(examples, data.products, cfg.eval_split), None
    if cfg.eval_base:
        base_dev = evaluate_student(model, examples, data.products, cfg.eval_split)
        log.info("base student on %s: %s", cfg.eval_split, base_dev)
    return evaluator, base_dev


def _checkpoints(out_dir: Path, cfg: DistillConfig, rows: dict[str, dict[str, list]], manifest_fields: dict,
                 resume: bool) -> tuple[Path, str | None]:
    """(the checkpoint folder, the checkpoint to resume from): a checkpoint resumes only the same run (config,
    row counts, teacher and scores: ``run.json``); without ``resume`` the old checkpoints go."""
    ckpt_dir = checkpoint_dir(out_dir)
    run_key = {"config": to_dict(cfg), "rows": {k: len(v["label"] if "label" in v else v["query"]) for k, v in rows.items()},
               **{k: manifest_fields.get(k) for k in ("teacher", "scores")}}
    last = last_checkpoint(ckpt_dir, run_key) if resume else None
    if not resume:
        _remove_checkpoints(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(ckpt_dir / "run.json", run_key)
    return ckpt_dir, last


def _training_args(cfg: DistillConfig, ckpt_dir: Path, evaluate: bool, bf16: bool):
    """SentenceTransformerTrainingArguments of ``cfg``: with a dev evaluator (``evaluate``), evaluate and save on
    ``cfg.eval_each`` and keep the best checkpoint by dev nDCG@10; without one, save each epoch."""
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    strategy = cfg.eval_each if evaluate else "no"
    every = cfg.eval_steps if cfg.eval_steps < 1 else int(cfg.eval_steps)
    return SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay, seed=cfg.seed, data_seed=cfg.seed,
        eval_strategy=strategy, eval_steps=every if strategy == "steps" else None,
        save_strategy=strategy if evaluate else "epoch",
        save_steps=every if strategy == "steps" else None,
        save_total_limit=cfg.keep_checkpoints, load_best_model_at_end=evaluate,
        metric_for_best_model=f"eval_{cfg.eval_split}_ndcg@10" if evaluate else None,
        greater_is_better=True, batch_sampler=BatchSamplers.NO_DUPLICATES, logging_steps=10,
        report_to="none", dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), bf16=bf16,
    )


def _calibrate(model_dir: Path, model, examples: pd.DataFrame, data_cfg: DataConfig | None) -> dict | None:
    """Fit the student's calibration on the dev split's judged pairs into ``model_dir``; its summary, or None
    (with a warning) when there is no usable dev split (`reldistill calibrate` can fit it later)."""
    if not (examples["split"] == "dev").any():
        log.warning("no dev split: the student is saved without a calibration")
        return None
    try:
        cal = fit_student_calibration(model, examples, "dev", data_cfg)
    except UserError as e:
        log.warning("no calibration fitted: %s", e)
        return None
    save_calibration(model_dir, cal)
    return summary(cal)


def _save_best_vectors(model_dir: Path, evaluator, best_checkpoint: str | None, products: pd.DataFrame,
                       runtime: Runtime | None = None) -> None:
    """Save the kept checkpoint's catalog vectors beside the model (the index build and eval reuse them)."""
    if evaluator is None or evaluator.best is None or not best_checkpoint:
        return
    _, step, vectors = evaluator.best
    if Path(best_checkpoint).name != f"checkpoint-{step}":  # the kept weights were evaluated before a resume
        return
    save_vectors(model_dir, products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist(), vectors,
                 runtime=runtime)


def _best_from_history(evaluator, trainer) -> dict | None:
    """The eval-split scores of the checkpoint the trainer kept (the history entry with the best nDCG@10)."""
    if not evaluator.history:
        return None
    return max(evaluator.history, key=lambda h: h["ndcg@10"])


def _teacher_info(teacher_dir: str | Path | None) -> dict | None:
    if teacher_dir is None:
        return None
    p = Path(teacher_dir)
    try:
        m = read_manifest(p)
    except UserError:
        return {"dir": str(p.resolve())}
    return {"dir": str(p.resolve()), **{k: m.get(k) for k in ("kind", "base_model", "created_at") if k in m}}


def scored_frame(scores_path: str | Path, data, examples: pd.DataFrame) -> pd.DataFrame:
    """Scored candidates of train queries with product text, from our scores parquet or FlagEmbedding JSONL."""
    p = Path(scores_path)
    if p.suffix.lower() == ".jsonl":
        if not p.is_file():
            raise UserError(f"FlagEmbedding file {p} does not exist — write it with `reldistill distill export`.")
        df = read_flag_jsonl(p)
    else:
        catalog = data.products.set_index("product_id")["text"]
        df = load_scores(p, set(catalog.index))
        df["text"] = df["product_id"].map(catalog).astype(str)
    df = _train_only(df, examples)
    if df.empty:
        raise UserError(f"scores file {scores_path} has no pairs of train queries — mine and label candidates for the train split.")
    return df


def _human_mnrl(examples: pd.DataFrame) -> dict[str, list]:
    hp = _human_positives(examples)
    return {"query": hp["query"].tolist(), "positive": hp["text"].tolist()}


def training_rows(scores_path: str | Path, cfg: DistillConfig, data, examples: pd.DataFrame) -> tuple[dict, dict]:
    """Training rows from a scores parquet, a FlagEmbedding JSONL, or a sentence-transformers Margin-MSE
    dataset folder (then the MNRL rows are the judged Exact pairs only); returns (rows, source summary)."""
    p = Path(scores_path)
    if p.is_dir():
        if cfg.loss != "margin-mse":
            raise UserError(f"{p} is a Margin-MSE dataset; train it with --loss margin-mse (or pass scores / FlagEmbedding JSONL).")
        rows = read_st_dataset(p)
        held = set(normalise_queries(examples.loc[examples["split"] != "train", "query"]))
        keep = [i for i, q in enumerate(normalise_queries(pd.Series(rows["query"]))) if q not in held]
        rows = {k: [v[i] for i in keep] for k, v in rows.items()}
        if not keep:
            raise UserError(f"{p} has no rows of train queries.")
        out = {"distill": rows}
        human = _human_mnrl(examples)
        if cfg.mnrl_weight > 0 and len(human["query"]) >= 2:
            out["mnrl"] = human
        return out, {"rows": len(keep), "queries": len(set(rows["query"]))}
    df = scored_frame(p, data, examples)
    target = blended_targets(df, cfg.human_weight)
    rows = build_rows(df, target, cfg, human_positives=_human_positives(examples))
    return rows, {"pairs": len(df), "queries": int(df["query_id"].nunique())}


def train_student(scores_path: str | Path, out_dir: str | Path, cfg: DistillConfig, data_cfg: DataConfig,
                  teacher_dir: str | Path | None = None, resume: bool = True, force: bool = False, *,
                  runtime: Runtime | None = None) -> Path:
    """Distil the teacher scores in ``scores_path`` (scores parquet, FlagEmbedding JSONL or a
    sentence-transformers Margin-MSE dataset folder) into ``cfg.student``; returns ``out_dir``.

    ``out_dir`` must be absent, empty or a student (``force`` replaces anything).
    """
    check_replaceable(out_dir, KIND, force)
    check_scores_current(scores_path)
    data, examples = load_data(data_cfg)
    rows, summary = training_rows(scores_path, cfg, data, examples)
    digest = file_fingerprint(scores_path) if Path(scores_path).is_file() else None
    return fit(rows, out_dir, cfg, data, examples, resume=resume, force=force, manifest_fields={
        "teacher": _teacher_info(teacher_dir) or {"dir": None},
        "scores": {"path": str(Path(scores_path).resolve()), "sha256": digest, **summary},
        "data_path": data_cfg.path}, data_cfg=data_cfg, runtime=runtime)


def training_summary(manifest: dict) -> dict | None:
    """What a trained student saw, from its manifest: its labels (``teacher`` scores or ``human`` labels), the labelled
    pairs and train queries it was offered, its steps and the rows they drew (steps × batch size); None for a model
    this toolkit did not train."""
    sc, steps = manifest.get("scores") or {}, manifest.get("steps")
    if "pairs" not in sc or steps is None:
        return None
    return {"labels": "human" if sc.get("human_labels_only") else "teacher", "pairs": int(sc["pairs"]),
            "queries": int(sc.get("queries", 0)), "steps": int(steps),
            "rows_seen": int(steps) * int((manifest.get("config") or {}).get("batch_size", 0))}


def train_human_student(out_dir: str | Path, cfg: DistillConfig, data_cfg: DataConfig, resume: bool = True,
                        force: bool = False, *, runtime: Runtime | None = None) -> Path:
    """The same student and loss trained on judged train pairs only, targets = soft labels (no teacher)."""
    check_replaceable(out_dir, KIND, force)
    data, examples = load_data(data_cfg)
    judged = examples[examples["split"] == "train"].copy()
    judged["teacher_score"] = judged["soft_label"].astype(float)
    target = judged["soft_label"].to_numpy(dtype=float)
    rows = build_rows(judged.reset_index(drop=True), target, cfg, human_positives=_human_positives(examples))
    return fit(rows, out_dir, cfg, data, examples, resume=resume, force=force, manifest_fields={
        "teacher": None, "scores": {"human_labels_only": True, "pairs": len(judged), "queries": int(judged["query_id"].nunique())},
        "data_path": data_cfg.path}, data_cfg=data_cfg, runtime=runtime)
