"""Teacher-labelled candidates in other tools' formats, and back.

- FlagEmbedding JSONL (its embedder fine-tuning data with knowledge distillation): one line per query,
  ``{"query", "pos": [text], "neg": [text], "pos_scores": [float], "neg_scores": [float]}``; scores are the
  teacher's probabilities. Lines also carry ``query_id``, ``pos_ids``/``neg_ids`` (product ids) and
  ``pos_labels``/``neg_labels`` (human soft labels, null when unjudged) — FlagEmbedding ignores extra
  keys, and with them ``distill train`` rebuilds exactly the rows it builds from our scores parquet.
  ``pos`` holds the candidates whose training target is at least 0.5 (at least one, never all); every
  line keeps its candidates in target order, best first. Queries with one candidate carry no ranking
  signal and are left out (FlagEmbedding needs a negative).
- sentence-transformers dataset (``Dataset.save_to_disk`` folder): the Margin-MSE triplets
  ``(query, positive, negative, label = scale · (t_pos − t_neg))``, the shape ``MarginMSELoss`` takes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.artifacts import atomic_path
from reldistill.data.queries import query_id
from reldistill.errors import UserError

FLAG_KEYS = ("query", "pos", "neg", "pos_scores", "neg_scores")
ST_COLUMNS = ("query", "positive", "negative", "label")
POS_TARGET = 0.5


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def flag_records(df: pd.DataFrame, target: np.ndarray) -> list[dict]:
    """FlagEmbedding lines from scored candidates (columns query_id, query, product_id, text, teacher_score, soft_label)."""
    out = []
    for qid, idx in df.groupby("query_id", sort=False).indices.items():
        if len(idx) < 2:
            continue
        order = idx[np.argsort(-target[idx], kind="stable")]
        n_pos = int(np.clip((target[order] >= POS_TARGET).sum(), 1, len(order) - 1))
        line = {"query": str(df["query"].iat[order[0]]), "query_id": str(qid)}
        for key, part in (("pos", order[:n_pos]), ("neg", order[n_pos:])):
            line[key] = [str(df["text"].iat[i]) for i in part]
            line[f"{key}_scores"] = [float(df["teacher_score"].iat[i]) for i in part]
            line[f"{key}_ids"] = [str(df["product_id"].iat[i]) for i in part]
            line[f"{key}_labels"] = [_num(df["soft_label"].iat[i]) for i in part]
        out.append({k: line[k] for k in (*FLAG_KEYS, "query_id", "pos_ids", "neg_ids", "pos_labels", "neg_labels")})
    return out


def write_flag_jsonl(records: list[dict], path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return Path(path)


def read_flag_jsonl(path: str | Path) -> pd.DataFrame:
    """Scored candidates (query_id, query, product_id, text, teacher_score, soft_label) from FlagEmbedding JSONL.

    Lines without ``query_id`` / ``*_ids`` / ``*_labels`` (written by other tools) get the normalised
    query text as id, a text digest as product id and no human label.
    """
    p = Path(path)
    rows = []
    with open(p, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                raise UserError(f"{p} line {n} is not JSON — is the file truncated?") from None
            missing = [k for k in FLAG_KEYS if k not in line]
            if missing:
                raise UserError(f"{p} line {n} has no {missing[0]!r} — FlagEmbedding lines need {', '.join(FLAG_KEYS)}.")
            query = str(line["query"])
            qid = str(line.get("query_id") or query_id(query))
            for key in ("pos", "neg"):
                texts, scores = line[key], line[f"{key}_scores"]
                if not isinstance(texts, list) or not isinstance(scores, list) or len(texts) != len(scores):
                    raise UserError(f"{p} line {n}: {key!r} and {key + '_scores'!r} must be lists of the same length.")
                ids = line.get(f"{key}_ids") or [hashlib.sha1(str(t).encode()).hexdigest()[:16] for t in texts]
                labels = line.get(f"{key}_labels") or [None] * len(texts)
                for t, s, i, lab in zip(texts, scores, ids, labels):
                    rows.append({"query_id": qid, "query": query, "product_id": str(i), "text": str(t),
                                 "teacher_score": s, "soft_label": np.nan if lab is None else lab})
    if not rows:
        raise UserError(f"{p} holds no candidates — export them with `reldistill distill export`.")
    df = pd.DataFrame(rows)
    score = pd.to_numeric(df["teacher_score"], errors="coerce")
    if not np.isfinite(score.to_numpy(dtype=float)).all() or ((score < 0) | (score > 1)).any():
        raise UserError(f"{p}: pos_scores/neg_scores must be teacher probabilities in [0, 1] (finite numbers).")
    df["teacher_score"] = score.astype(float)
    df["soft_label"] = pd.to_numeric(df["soft_label"], errors="coerce").astype(float)
    return df


def st_margin_dataset(rows: dict[str, list]):
    """The Margin-MSE rows as a ``datasets.Dataset`` with sentence-transformers' column order."""
    from datasets import Dataset

    return Dataset.from_dict({"query": rows["query"], "positive": rows["doc_a"], "negative": rows["doc_b"],
                              "label": rows["label"]})


def read_st_dataset(path: str | Path) -> dict[str, list]:
    """Margin-MSE rows (query, doc_a, doc_b, label) from a sentence-transformers dataset folder."""
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"{path} is not a datasets folder ({str(e).splitlines()[0][:100]}) — write one with `reldistill distill export`.") from None
    if list(ds.column_names) != list(ST_COLUMNS):
        raise UserError(f"{path} has columns {', '.join(ds.column_names)}; a Margin-MSE dataset has {', '.join(ST_COLUMNS)}.")
    if len(ds) == 0:
        raise UserError(f"{path} has no rows.")
    return {"query": ds["query"], "doc_a": ds["positive"], "doc_b": ds["negative"], "label": [float(x) for x in ds["label"]]}
