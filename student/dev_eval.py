"""Full-catalog retrieval quality of a student on one split: graded nDCG@10 and Recall@100 (ranx, ESCI gains).

Recall@100 counts Exact products (the top gain) as relevant, as `reldistill eval` does.

Every query of the split is searched against every product of the catalog (exact inner product on
L2-normalised embeddings, FAISS flat), so the figure is what the retrieval stack would see, not a
re-ranking of the judged pairs. Gains come from the data (reldistill.labels via DataConfig); the
metrics are reldistill.metrics' (one gain scale for teacher, student and eval).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reldistill.errors import UserError
from reldistill.metrics import mean_metrics
from reldistill.index.dense import exact_top_k
from reldistill.student.encode import encode_documents, encode_queries

METRICS = ("ndcg@10", "recall@100")


def split_qrels(examples: pd.DataFrame, split: str) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """({query_id: query}, {query_id: {product_id: gain}}) for queries of ``split`` with a positive gain."""
    rows = examples[examples["split"] == split]
    if rows.empty:
        raise UserError(f"split {split!r} has no queries — check data.dev_fraction or the split column.")
    qrels: dict[str, dict[str, float]] = {}
    for q, p, g in rows[["query_id", "product_id", "gain"]].itertuples(index=False):
        qrels.setdefault(str(q), {})[str(p)] = float(g)
    qrels = {q: d for q, d in qrels.items() if any(v > 0 for v in d.values())}
    queries = rows.drop_duplicates("query_id").set_index("query_id")["query"].astype(str)
    return {q: queries[q] for q in qrels}, qrels


def catalog_search(model, queries: list[str], products: pd.DataFrame, k: int = 100,
                   doc_embeddings: np.ndarray | None = None, batch_size: int = 64,
                   query_encoder=None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of the top-``k`` catalog products per query by cosine similarity (FAISS flat, no full matrix).

    ``query_encoder``: encodes the queries instead of ``encode_queries(model)`` (a ``QueryEncoder``: search's path)."""
    docs = doc_embeddings if doc_embeddings is not None else encode_documents(model, products["text"].tolist(), batch_size)
    qv = query_encoder.encode(queries) if query_encoder is not None else encode_queries(model, queries, batch_size)
    return exact_top_k(qv, docs, k)


def evaluate_student(model, examples: pd.DataFrame, products: pd.DataFrame, split: str = "dev",
                     k: int = 100, batch_size: int = 64, doc_embeddings: np.ndarray | None = None,
                     query_encoder=None) -> dict[str, float]:
    """{'ndcg@10', 'recall@100', 'queries'} of ``model`` on ``split`` against the full ``products`` catalog.

    ``doc_embeddings``: the catalog already encoded by ``model`` (to score several splits with one encode);
    ``query_encoder``: what encodes the queries (see ``catalog_search``).
    """
    queries, qrels = split_qrels(examples, split)
    if not qrels:
        raise UserError(f"split {split!r} has no query with a relevant product — nothing to evaluate.")
    qids = list(queries)
    scores, idx = catalog_search(model, [queries[q] for q in qids], products, k, doc_embeddings, batch_size, query_encoder)
    pids = products["product_id"].astype(str).to_numpy()
    run = {q: {str(pids[j]): float(s) for j, s in zip(idx[i], scores[i])} for i, q in enumerate(qids)}
    top = max(max(d.values()) for d in qrels.values())
    exact = {q: {p: 1.0 for p, g in d.items() if g == top} for q, d in qrels.items()}
    exact = {q: d for q, d in exact.items() if d}
    ndcg = mean_metrics(qrels, run, ["ndcg@10"])["ndcg@10"]
    recall = mean_metrics(exact, run, ["recall@100"])["recall@100"] if exact else 0.0
    return {"ndcg@10": float(ndcg), "recall@100": float(recall), "queries": len(qids)}
