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
