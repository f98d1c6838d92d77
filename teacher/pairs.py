"""Training and held-out pairs for the teacher: train queries minus a seeded dev share (split by query)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reldistill.config import DataConfig
from reldistill.data import carve_dev, load_esci
from reldistill.errors import UserError


def split_pairs(data_cfg: DataConfig, include_sparse: bool = True) -> dict[str, pd.DataFrame]:
    """{'train', 'dev', 'test'} pair frames. Sparse queries (one judged pair) are dropped from train if asked."""
    data = load_esci(data_cfg)
    ex = data.examples.copy()
    ex["split"] = carve_dev(ex, data_cfg.dev_fraction, data_cfg.seed)
    out = {name: ex[ex["split"] == name].reset_index(drop=True) for name in ("train", "dev", "test")}
    if not include_sparse:
        sizes = out["train"].groupby("query_id")["product_id"].transform("size")
        out["train"] = out["train"][sizes > 1].reset_index(drop=True)
    if out["train"].empty:
        raise UserError(f"{data_cfg.path} has no training pairs after carving the dev split — check data.path and data.dev_fraction.")
    return out


def cap_by_query(df: pd.DataFrame, max_pairs: int | None, seed: int = 0) -> pd.DataFrame:
    """At most ~``max_pairs`` rows, keeping whole queries (judged-rich queries first, then seeded order)."""
    if max_pairs is None or len(df) <= max_pairs:
        return df
    sizes = df.groupby("query_id")["product_id"].size()
    rng = np.random.default_rng(seed)
    keys = pd.DataFrame({"q": sizes.index, "n": sizes.to_numpy(), "r": rng.random(len(sizes))})
    keys = keys.sort_values(["n", "r"], ascending=[False, True])
    # greedy: queries with the most judged pairs first (they carry nDCG), single pairs fill the rest
    keep, total = [], 0
    for q, n in zip(keys["q"], keys["n"]):
        if total + n > max_pairs:
            continue
        keep.append(q)
        total += n
    return df[df["query_id"].isin(keep)].reset_index(drop=True)


def cap_queries(df: pd.DataFrame, max_queries: int | None, seed: int = 0) -> pd.DataFrame:
    """Whole queries only: those with >= 2 judged candidates (the ones nDCG ranks), ``max_queries`` of them seeded."""
    sizes = df.groupby("query_id", sort=True)["product_id"].size()
    ranked = sizes[sizes >= 2].index.to_numpy()
    if max_queries is not None and len(ranked) > max_queries:
        ranked = np.random.default_rng(seed).choice(ranked, size=max_queries, replace=False)
    return df[df["query_id"].isin(set(ranked))].reset_index(drop=True)


def add_random_negatives(df: pd.DataFrame, per_query: int, seed: int = 0) -> pd.DataFrame:
    """Append ``per_query`` products judged for OTHER queries to each query, as Irrelevant (soft label 0, gain 0)."""
    if per_query <= 0 or df["query_id"].nunique() < 2:
        return df
    rng = np.random.default_rng([seed, 7])
    firsts = df.drop_duplicates("query_id")
    rows = []
    for qid, query in zip(firsts["query_id"], firsts["query"]):
        pool = np.flatnonzero(df["query_id"].to_numpy() != qid)
        pick = df.iloc[rng.choice(pool, size=min(per_query, len(pool)), replace=False)].copy()
        pick["query_id"], pick["query"] = qid, query
        rows.append(pick)
    neg = pd.concat(rows, ignore_index=True)
    for col, value in (("esci_label", "I"), ("soft_label", 0.0), ("gain", 0.0)):
        if col in neg.columns:
            neg[col] = value
    return pd.concat([df, neg], ignore_index=True)


def query_groups(df: pd.DataFrame, group_size: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices of each query group: a query's rows (seeded order) cut into groups of at most ``group_size``.

    Every row is in exactly one group and a group never mixes queries.
    """
    rng = np.random.default_rng([seed, 11])
    out = []
    for _, rows in df.groupby("query_id", sort=True).indices.items():
        rows = rng.permutation(rows)
        out.extend(rows[i: i + group_size] for i in range(0, len(rows), group_size))
    return out
