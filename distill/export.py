"""`distill export`: the teacher-labelled train candidates in FlagEmbedding's and sentence-transformers' formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reldistill.artifacts import atomic_path, check_replaceable, write_manifest
from reldistill.config import DataConfig, to_dict
from reldistill.recipe.distill import DistillConfig

from .examples import blended_targets, margin_rows
from .interchange import flag_records, st_margin_dataset, write_flag_jsonl
from .train import load_data, scored_frame

FLAG_FILE = "flagembedding.jsonl"
MARGIN_DIR = "margin-mse"
KIND = "labelled-data"


def export_labelled(scores_path: str | Path, dest: str | Path, cfg: DistillConfig, data_cfg: DataConfig) -> dict:
    """``dest/flagembedding.jsonl`` + ``dest/margin-mse/`` (Margin-MSE triplets) + manifest (kind
    "labelled-data", last) from the teacher's scores; returns the manifest."""
    dest = Path(dest)
    check_replaceable(dest, KIND)  # before any work: only a previous export (or a new path) is replaced
    data_obj, examples = load_data(data_cfg)
    df = scored_frame(scores_path, data_obj, examples)
    target = blended_targets(df, cfg.human_weight)
    records = flag_records(df, target)
    triplets = margin_rows(df, target, cfg, np.random.default_rng(cfg.seed))
    with atomic_path(dest) as tmp:  # the whole folder is swapped in, so a kill keeps the previous export
        tmp.mkdir()
        flag = write_flag_jsonl(records, tmp / FLAG_FILE)
        st_margin_dataset(triplets).save_to_disk(str(tmp / MARGIN_DIR))
        m = write_manifest(tmp, KIND, scores=str(Path(scores_path).resolve()), flagembedding=flag.name,
                           flagembedding_queries=len(records), margin_mse=MARGIN_DIR, margin_mse_rows=len(triplets["label"]),
                           distill=to_dict(cfg))
    return m
