"""Turn scored candidates into training rows for each loss (targets blend teacher and human labels).

Target per pair: the teacher probability; for judged pairs ``(1 - w) * teacher + w * soft_label``
(``w = cfg.human_weight``). Without a teacher (human-labels-only student) the target is the soft label
of judged pairs. Student scores are cosine similarities, so targets are multiplied by ``score_scale``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reldistill.errors import UserError

from reldistill.recipe.distill import DistillConfig

MIN_MARGIN = 0.05  # pairs whose targets differ by less than this carry no ranking signal


def blended_targets(df: pd.DataFrame, human_weight: float) -> np.ndarray:
    """Teacher score, blended with the soft label where a human judged the pair."""
    t = df["teacher_score"].to_numpy(dtype=float)
    soft = df["soft_label"].to_numpy(dtype=float)
    has = np.isfinite(soft)
    return np.where(has, (1 - human_weight) * t + human_weight * np.nan_to_num(soft), t)


def margin_rows(df: pd.DataFrame, target: np.ndarray, cfg: DistillConfig, rng: np.random.Generator) -> dict[str, list]:
    """(query, doc_a, doc_b, label=scale·(t_a − t_b)) with t_a > t_b: per query, each upper-half candidate
    is paired with ``negatives_per_positive`` lower-scored ones."""
    out = {"query": [], "doc_a": [], "doc_b": [], "label": []}
    for _, idx in df.groupby("query_id", sort=False).indices.items():
        if len(idx) < 2:
            continue
        t = target[idx]
        order = idx[np.argsort(-t, kind="stable")]
        ts = target[order]
        cut = max(1, int(np.ceil(len(order) / 2)))
        for i in range(cut):
            lower = np.nonzero(ts < ts[i] - MIN_MARGIN)[0]
            if len(lower) == 0:
                continue
            pick = rng.choice(lower, size=min(cfg.negatives_per_positive, len(lower)), replace=False)
            for j in pick:
                out["query"].append(df["query"].iat[order[i]])
                out["doc_a"].append(df["text"].iat[order[i]])
                out["doc_b"].append(df["text"].iat[order[j]])
                out["label"].append(float(cfg.score_scale * (ts[i] - ts[j])))
    return out


def list_rows(df: pd.DataFrame, target: np.ndarray, cfg: DistillConfig, rng: np.random.Generator) -> dict[str, list]:
    """(query, c1..cN, label=[scale·t_1..t_N]) listwise rows: per query, each upper-half candidate heads a
    list filled with random others (with replacement when the query has fewer than N candidates)."""
    n = cfg.kl_list_size
    out: dict[str, list] = {"query": [], **{f"doc_{k}": [] for k in range(n)}, "label": []}
    for _, idx in df.groupby("query_id", sort=False).indices.items():
        if len(idx) < 2:
            continue
        t = target[idx]
        if np.ptp(t) < MIN_MARGIN:
            continue
        order = idx[np.argsort(-t, kind="stable")]
        for i in range(max(1, int(np.ceil(len(order) / 2)))):
            others = np.delete(order, i)
            rest = rng.choice(others, size=n - 1, replace=len(others) < n - 1)
            members = np.concatenate([[order[i]], rest])
            out["query"].append(df["query"].iat[order[i]])
            for k, m in enumerate(members):
                out[f"doc_{k}"].append(df["text"].iat[m])
            out["label"].append([float(cfg.score_scale * target[m]) for m in members])
    return out


def pointwise_rows(df: pd.DataFrame, target: np.ndarray, cfg: DistillConfig) -> dict[str, list]:
    """(query, doc, label=scale·t) rows for pointwise MSE on cosine similarity."""
    return {"query": df["query"].tolist(), "doc": df["text"].tolist(),
            "label": [float(cfg.score_scale * x) for x in target]}


def positive_rows(df: pd.DataFrame, target: np.ndarray, min_target: float = 0.75) -> dict[str, list]:
    """(query, positive) rows for in-batch-negative MNRL: pairs whose target is at least ``min_target``."""
    keep = target >= min_target
    return {"query": df.loc[keep, "query"].tolist(), "positive": df.loc[keep, "text"].tolist()}


def build_rows(df: pd.DataFrame, target: np.ndarray, cfg: DistillConfig,
               human_positives: pd.DataFrame | None = None) -> dict[str, dict[str, list]]:
    """{'distill': rows for ``cfg.loss``[, 'mnrl': positive rows when cfg.mnrl_weight > 0]}; empty → UserError.

    ``human_positives`` (query, text): judged Exact pairs added to the MNRL rows, so a distilled student
    sees every human positive the human-labels-only student sees, plus the teacher's.
    """
    rng = np.random.default_rng(cfg.seed)
    if cfg.loss == "margin-mse":
        main = margin_rows(df, target, cfg, rng)
    elif cfg.loss == "kl":
        main = list_rows(df, target, cfg, rng)
    else:
        main = pointwise_rows(df, target, cfg)
    if not main["label"]:
        raise UserError(f"no training rows for loss {cfg.loss!r}: every query has a single candidate or equal scores — "
                        "mine deeper candidate lists (distill.bm25_depth / dense_depth) or use --loss mse.")
    rows = {"distill": main}
    if cfg.mnrl_weight > 0:
        pos = positive_rows(df, target)
        if human_positives is not None and len(human_positives):
            seen = set(zip(pos["query"], pos["positive"]))
            extra = [(q, t) for q, t in zip(human_positives["query"], human_positives["text"]) if (q, t) not in seen]
            pos["query"] += [q for q, _ in extra]
            pos["positive"] += [t for _, t in extra]
        pairs = sorted(zip(pos["query"], pos["positive"]))  # one order whatever the input row order (the sampler shuffles)
        pos = {"query": [q for q, _ in pairs], "positive": [t for _, t in pairs]}
        if len(pos["query"]) >= 2:
            rows["mnrl"] = pos
    return rows
