"""Summary statistics of a loaded dataset (for `reldistill data stats`, and the run's data check)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from reldistill.artifacts import write_manifest
from reldistill.config import DataConfig
from reldistill.data.esci import EsciData, load_esci


def _percentiles(lengths: np.ndarray) -> dict[str, int]:
    if len(lengths) == 0:
        return {}
    qs = np.percentile(lengths, [50, 90, 99]).round().astype(int)
    return {"p50": int(qs[0]), "p90": int(qs[1]), "p99": int(qs[2]), "max": int(lengths.max())}


def data_stats(data: EsciData) -> dict[str, Any]:
    """Pairs, queries, products, label counts per split, and text-length percentiles (chars and words)."""
    ex, pr = data.examples, data.products
    splits: dict[str, Any] = {}
    for name, part in ex.groupby("split", sort=True):
        per_q = part.groupby("query_id").size()
        splits[str(name)] = {
            "pairs": int(len(part)),
            "queries": int(part["query_id"].nunique()),
            "labels": {str(k): int(v) for k, v in part["esci_label"].value_counts().sort_index().items()},
            "judged_per_query": {"min": int(per_q.min()), "median": float(per_q.median()), "max": int(per_q.max())},
        }
    text_chars = pr["text"].str.len().to_numpy()
    text_words = pr["text"].str.split().str.len().to_numpy()
    q = ex.drop_duplicates("query_id")["query"]
    return {
        "source": data.source,
        "pairs": int(len(ex)),
        "queries": int(ex["query_id"].nunique()),
        "products": int(len(pr)),
        "judged_products": int(ex["product_id"].nunique()),
        "labels": {str(k): int(v) for k, v in ex["esci_label"].value_counts().sort_index().items()},
        "splits": splits,
        "dropped_empty_text": int(data.dropped_empty_text),
        "product_text_chars": _percentiles(text_chars),
        "product_text_words": _percentiles(text_words),
        "query_chars": _percentiles(q.str.len().to_numpy()),
    }


def check_data(cfg: DataConfig, out_dir: str | Path) -> dict[str, Any]:
    """Load ``cfg``'s data (a UserError names what is wrong) and write its stats as ``out_dir/manifest.json``
    (kind "data-check"); returns the manifest."""
    stats = data_stats(load_esci(cfg))
    return write_manifest(out_dir, "data-check", data=dataclasses.asdict(cfg), stats=stats)
