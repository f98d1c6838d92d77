"""Teacher metrics: MSE of sigmoid(logit) vs soft label (the seed's metric), graded nDCG per query (reldistill.metrics), score distributions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reldistill.metrics import ndcg_of_scores


def mse(probs: np.ndarray, soft_labels: np.ndarray) -> float:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(soft_labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def ndcg(scores: Sequence[float], gains: Sequence[float], k: int | None = None) -> float | None:
    """nDCG@k of one query's judged candidates ranked by ``scores`` (reldistill.metrics: linear gains, ties pessimistic)."""
    return ndcg_of_scores(scores, gains, k)


def per_query_ndcg(df: pd.DataFrame, score_col: str = "teacher_score", k: int | None = None,
                   min_judged: int = 2) -> dict[str, float]:
    """{query_id: nDCG} of the queries with at least ``min_judged`` judged candidates and a positive gain."""
    out = {}
    for qid, g in df.groupby("query_id", sort=False):
        if len(g) < min_judged:
            continue
        v = ndcg(g[score_col].to_numpy(), g["gain"].to_numpy(), k)
        if v is not None:
            out[str(qid)] = v
    return out


def mean_ndcg(df: pd.DataFrame, score_col: str = "teacher_score", k: int | None = None, min_judged: int = 2) -> tuple[float, int]:
    """Mean nDCG over queries with at least ``min_judged`` judged candidates and a positive gain; (mean, n_queries)."""
    vals = list(per_query_ndcg(df, score_col, k, min_judged).values())
    return (float(np.mean(vals)) if vals else float("nan")), len(vals)


def label_distributions(df: pd.DataFrame, score_col: str = "teacher_score") -> dict[str, dict[str, float]]:
    """Per ESCI label: count, mean and quartiles of the teacher's probabilities."""
    out = {}
    for label, g in df.groupby("esci_label", sort=True):
        s = g[score_col].to_numpy(dtype=np.float64)
        q = np.quantile(s, [0.1, 0.25, 0.5, 0.75, 0.9])
        out[str(label)] = {"n": int(len(s)), "mean": float(s.mean()), "p10": float(q[0]), "p25": float(q[1]),
                           "p50": float(q[2]), "p75": float(q[3]), "p90": float(q[4])}
    return out


def evaluate_scores(df: pd.DataFrame, probs: np.ndarray) -> dict[str, float]:
    """MSE vs ``soft_label``, mean nDCG (all judged) and nDCG@10 over the queries of ``df``."""
    d = df.assign(teacher_score=np.asarray(probs, dtype=np.float64))
    nd, nq = mean_ndcg(d)
    nd10, _ = mean_ndcg(d, k=10)
    out = {"pairs": int(len(d)), "mse": mse(d["teacher_score"], d["soft_label"]),
           "ndcg": nd, "ndcg@10": nd10, "ndcg_queries": nq}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
