"""`teacher eval`: score one split's judged pairs → MSE, graded nDCG per query, per-label score distributions."""

from __future__ import annotations

import os
from typing import Any

from reldistill.config import DataConfig, from_dict
from reldistill.errors import UserError
from reldistill.settings import Runtime
from reldistill.teacher.metrics import evaluate_scores, label_distributions

SPLITS = ("train", "dev", "test")


def data_config_of(manifest: dict[str, Any], data_path: str | None = None) -> DataConfig:
    """The data section the teacher was trained with (same dev carve), with an optional path override."""
    raw = dict(manifest.get("data") or {})
    cfg = from_dict(DataConfig, raw, "teacher manifest: data") if raw else DataConfig()
    if data_path is not None:
        cfg.path = str(data_path)
    return cfg


def evaluate_teacher(teacher_dir: str | os.PathLike, split: str = "test", data_path: str | None = None,
                     dtype: str = "auto", batch_size: int = 32, progress: bool = True, *,
                     runtime: Runtime | None = None) -> dict[str, Any]:
    from reldistill.teacher.artifact import open_artifact
    from reldistill.teacher.pairs import split_pairs
    from reldistill.teacher.teacher import Teacher

    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}.")
    art = open_artifact(teacher_dir)
    cfg = data_config_of(art.manifest, data_path)
    df = split_pairs(cfg)[split]
    if df.empty:
        raise UserError(f"split {split!r} of {cfg.path} has no pairs — pick another --split.")
    from reldistill.teacher.backbone import set_cpu_threads

    set_cpu_threads("auto", runtime)
    teacher = Teacher.load(teacher_dir, dtype=dtype, runtime=runtime)
    probs = teacher.score_pairs(df["query"].tolist(), df["text"].tolist(), batch_size=batch_size, progress=progress)
    metrics = evaluate_scores(df, probs)
    return {"teacher": str(teacher_dir), "split": split, "data": cfg.path, "dtype": str(teacher.dtype).removeprefix("torch."),
            "metrics": metrics, "by_label": label_distributions(df.assign(teacher_score=probs))}
