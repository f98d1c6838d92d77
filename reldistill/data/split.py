"""Query-level splits: seeded, hash-based, so a query never lands on both sides."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def query_unit(query_ids: pd.Series, seed: int, salt: str = "") -> np.ndarray:
    """A stable number in [0, 1) per query id (same id → same number, whatever the row order)."""
    uniq = pd.unique(query_ids.astype(str))
    vals = {}
    for q in uniq:
        h = hashlib.blake2b(f"{seed}:{salt}:{q}".encode(), digest_size=8).digest()
        vals[q] = int.from_bytes(h, "big") / 2**64
    return query_ids.astype(str).map(vals).to_numpy(dtype=np.float64)


def assign_splits(examples: pd.DataFrame, test_fraction: float, seed: int) -> pd.Series:
    """Existing ``split`` column wins; otherwise hash queries into train/test (85/15 by default)."""
    if "split" in examples.columns and examples["split"].notna().all():
        return examples["split"].astype(str)
    u = query_unit(examples["query_id"], seed, "test")
    hashed = pd.Series(np.where(u < test_fraction, "test", "train"), index=examples.index)
    if "split" in examples.columns:  # partial column: keep given values, fill the rest
        return examples["split"].astype("string").fillna(hashed).astype(str)
    return hashed


def carve_dev(examples: pd.DataFrame, dev_fraction: float, seed: int) -> pd.Series:
    """Move ``dev_fraction`` of the train queries to 'dev' (for model selection); test is untouched."""
    split = examples["split"].astype(str).copy()
    if dev_fraction <= 0:
        return split
    u = query_unit(examples["query_id"], seed, "dev")
    split[(split == "train").to_numpy() & (u < dev_fraction)] = "dev"
    return split
