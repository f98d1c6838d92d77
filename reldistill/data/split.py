"""Query-level splits: seeded, hash-based, so a query never lands on both sides."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

# judged-count strata of the dev carve: single-judged, a few, a list, a long list
DEV_STRATA = (1, 2, 5, 10)


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
    """Move ``dev_fraction`` of the train queries to 'dev' (for model selection); test is untouched.

    Stratified by judged count (``DEV_STRATA``): within each stratum the queries with the lowest seeded
    hash go to dev, ``round(dev_fraction × n)`` of them, so dev holds its share of multi-judged queries
    (the ones nDCG can rank) whatever the luck of the hash. Whole queries move; the choice of a query
    depends only on its id, the seed and its stratum, not on row order.
    """
    split = examples["split"].astype(str).copy()
    if dev_fraction <= 0:
        return split
    train = (split == "train").to_numpy()
    qids = examples["query_id"].astype(str)
    counts = qids[train].value_counts()
    if counts.empty:
        return split
    units = pd.Series(query_unit(pd.Series(counts.index), seed, "dev"), index=counts.index)
    stratum = np.searchsorted(np.asarray(DEV_STRATA), counts.to_numpy(), side="right")
    dev_ids: list[str] = []
    for s in np.unique(stratum):
        members = units[stratum == s].sort_values(kind="mergesort")
        dev_ids.extend(members.index[: int(round(dev_fraction * len(members)))])
    split[train & qids.isin(set(dev_ids)).to_numpy()] = "dev"
    return split
