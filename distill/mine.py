"""Candidate mining: which (query, product) pairs the teacher should label.

For every TRAIN query (never dev/test): its judged products, plus hard candidates mined from the
whole catalog with the retrieval index's BM25 (BM25Index) and with the current student (dense, exact
inner product through FAISS: `exact_top_k`). Queries
with few judgements ("unlabeled": the sample's sparse single-pair queries, or a user's query list)
get a shallower mined list — the teacher labels far more pairs than humans did. Mined products that
are near-duplicates of a judged positive can be dropped (the teacher would label them positive anyway,
and they look like false negatives to in-batch losses).

sentence-transformers' ``mine_hard_negatives`` needs an (anchor, positive) pair per row and embeds the
corpus itself; here unlabeled queries have no positive and the catalog embeddings are reused for the
near-duplicate filter, so the dense side is one shared catalog encode + a FAISS flat search instead.
That encode is the base student's, as loaded (its own max_seq_length): given a ``catalog_cache`` (the run's
eval cache) it is saved there under eval's cache key, and eval's base-student row reuses it instead of
encoding the catalog again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.artifacts import MANIFEST, data_fingerprint, write_manifest, write_parquet
from reldistill.config import DataConfig, to_dict
from reldistill.data import EsciData, carve_dev, load_esci, normalise_queries, query_ids
from reldistill.data.split import query_unit
from reldistill.errors import UserError
from reldistill.index.dense import exact_top_k
from reldistill.index.lexical import BM25Index
from reldistill.recipe.distill import DistillConfig
from reldistill.run_layout import CANDIDATES_FILE
from reldistill.settings import Runtime
from reldistill.models import resolve_model
from reldistill.student.catalog_encode import encode_catalog
from reldistill.student.catalog_vectors import loaded_cache_key
from reldistill.student.encode import encode_queries, load_student

log = logging.getLogger(__name__)

CANDIDATE_COLUMNS = ["query_id", "query", "product_id", "source", "esci_label", "soft_label", "split", "text"]


def with_dev_split(data: EsciData, dev_fraction: float, seed: int) -> pd.DataFrame:
    """The examples with a seeded share of train queries moved to 'dev' (test untouched)."""
    ex = data.examples.copy()
    ex["split"] = carve_dev(ex, dev_fraction, seed)
    return ex


def read_query_list(path: str | Path) -> list[str]:
    """Extra unlabeled queries: a .txt file (one per line) or a CSV/JSONL/parquet table with a 'query' column."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"distill.queries_path {p} does not exist — pass a text file with one query per line or a table with a 'query' column.")
    try:
        if p.suffix.lower() == ".txt":
            qs = pd.Series(p.read_text(encoding="utf-8").splitlines())
        else:
            if p.suffix.lower() == ".csv":
                df = pd.read_csv(p, dtype=str, encoding="utf-8")
            elif p.suffix.lower() in (".jsonl", ".json"):
                df = pd.read_json(p, lines=p.suffix.lower() == ".jsonl", dtype=False)
            else:
                df = pd.read_parquet(p)
            if "query" not in df.columns:
                raise UserError(f"{p} has no column 'query' (columns: {', '.join(map(str, df.columns))}) — add it.")
            qs = df["query"]
    except UnicodeDecodeError:
        raise UserError(f"{p} is not UTF-8 text — re-save it as UTF-8.") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{p} could not be read ({str(e).splitlines()[0][:120]}) — is it truncated?") from None
    qs = qs.dropna().astype(str).str.strip()
    qs = qs[(qs != "") & (qs.str.len() <= 1000)].drop_duplicates()
    if qs.empty:
        raise UserError(f"{p} holds no usable query (empty lines and queries over 1000 characters are skipped).")
    return qs.tolist()


def bm25_top(queries: list[str], catalog_texts: list[str], k: int) -> list[list[int]]:
    """Catalog row indices of the BM25 top-``k`` per query (the retrieval index's BM25; zero-score hits dropped).

    The queries are scored in batches of bounded memory (``BM25Index.search``), never as a queries × catalog matrix.
    """
    if k <= 0 or not queries:
        return [[] for _ in queries]
    t = time.perf_counter()
    index = BM25Index.build([str(i) for i in range(len(catalog_texts))], catalog_texts)
    log.info("BM25 index of %d products built in %.1f s", len(catalog_texts), time.perf_counter() - t)
    t = time.perf_counter()
    ids, _ = index.search(list(queries), min(k, len(catalog_texts)))
    log.info("BM25 top-%d of %d queries in %.1f s", k, len(queries), time.perf_counter() - t)
    return [[int(i) for i in row] for row in ids]


def dense_top(query_emb: np.ndarray, doc_emb: np.ndarray, k: int) -> list[list[int]]:
    """Catalog row indices of the exact inner-product top-``k`` per query."""
    if k <= 0 or len(query_emb) == 0:
        return [[] for _ in range(len(query_emb))]
    return exact_top_k(query_emb, doc_emb, k)[1].tolist()


def mine_candidates(data: EsciData, cfg: DistillConfig, student=None, dev_fraction: float = 0.15,
                    seed: int = 13, extra_queries: list[str] | None = None, *,
                    runtime: Runtime | None = None, catalog_cache: Path | None = None) -> pd.DataFrame:
    """Candidate pairs for teacher labelling, train queries only; columns ``CANDIDATE_COLUMNS``.

    ``student``: a SentenceTransformer for the dense side (loaded from ``cfg.student`` when None and
    ``cfg.dense_depth`` > 0, on ``runtime``'s backend). ``extra_queries``: unlabeled queries (``cfg.queries_path`` is read when None).
    ``catalog_cache``: a folder where the loaded student's catalog encode is kept for eval (see the module docstring).
    Each (query_id, product_id) appears once; judged rows win over mined ones.
    """
    ex = with_dev_split(data, dev_fraction, seed)
    products = data.products.reset_index(drop=True)
    if products.empty:
        raise UserError("the products catalog is empty — check data.path and data.locale.")
    train = _train_rows(ex)
    full_ids, sparse_ids = _chosen_queries(train, cfg, seed)
    judged = train[train["query_id"].isin(full_ids | sparse_ids)].assign(source="judged")
    qtab = judged.drop_duplicates("query_id")[["query_id", "query"]].assign(full=lambda d: d["query_id"].isin(full_ids))
    queries_extra = extra_queries if extra_queries is not None else (read_query_list(cfg.queries_path) if cfg.queries_path else [])
    qtab = _with_extra_queries(qtab, ex, queries_extra)
    mined, doc_emb = _mined(qtab, products, cfg, student, runtime, catalog_cache)
    if cfg.drop_near_duplicates and doc_emb is not None and len(mined):
        mined = _drop_near_duplicates(mined, judged, products, doc_emb, cfg.near_duplicate_threshold)
    mined = mined.assign(esci_label=None, soft_label=np.nan, split="train")
    mined["text"] = products["text"].astype(str).to_numpy()[mined["row"].to_numpy()] if len(mined) else []
    out = pd.concat([judged[CANDIDATE_COLUMNS], mined[CANDIDATE_COLUMNS]], ignore_index=True)
    out = out.drop_duplicates(["query_id", "product_id"], keep="first").reset_index(drop=True)
    out["soft_label"] = out["soft_label"].astype(float)
    return out


def _train_rows(ex: pd.DataFrame) -> pd.DataFrame:
    """The train split's judged rows, less any query whose text is also a dev or test query."""
    held_out = set(normalise_queries(ex.loc[ex["split"] != "train", "query"]))
    train = ex[(ex["split"] == "train") & ~normalise_queries(ex["query"]).isin(held_out)]
    if train.empty:
        raise UserError("there are no train queries to mine candidates for — check the data's split column and data.dev_fraction.")
    return train


def _chosen_queries(train: pd.DataFrame, cfg: DistillConfig, seed: int) -> tuple[set, set]:
    """(multi-judged query ids, sparsely judged query ids) to mine for, each capped by its ``cfg`` maximum
    (a seeded, order-free choice: `query_unit`)."""
    n_judged = train.groupby("query_id")["product_id"].transform("size")
    chosen = []
    for ids, cap, salt in ((train.loc[n_judged >= cfg.min_judged, "query_id"], cfg.max_judged_queries, "judged"),
                           (train.loc[n_judged < cfg.min_judged, "query_id"], cfg.max_unlabeled_queries, "unlabeled")):
        ids = pd.Series(pd.unique(ids))
        if cap is not None and len(ids) > cap:
            ids = ids.iloc[np.argsort(query_unit(ids, seed, salt), kind="stable")[:cap]]
        chosen.append(set(ids))
    return chosen[0], chosen[1]


def _with_extra_queries(qtab: pd.DataFrame, ex: pd.DataFrame, queries: list[str]) -> pd.DataFrame:
    """``qtab`` plus the user's unlabeled queries that are not already in the data (ids ``u:...``, not full)."""
    if not queries:
        return qtab
    known = set(normalise_queries(ex["query"]))
    extra = pd.DataFrame({"query": queries})
    extra = extra[~normalise_queries(extra["query"]).isin(known)].drop_duplicates("query")
    extra["query_id"] = query_ids(extra["query"], prefix="u:")
    extra["full"] = False
    log.info("added %d unlabeled user queries", len(extra))
    return pd.concat([qtab, extra[["query_id", "query", "full"]]], ignore_index=True)


def _mined(qtab: pd.DataFrame, products: pd.DataFrame, cfg: DistillConfig, student, runtime: Runtime | None,
           catalog_cache: Path | None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """(BM25 and dense hits of every query in ``qtab`` to its depth: query_id, query, row, source, product_id;
    the catalog's student vectors, or None when nothing needed them)."""
    texts, qtexts = products["text"].astype(str).tolist(), qtab["query"].astype(str).tolist()
    depth_bm25 = np.where(qtab["full"], cfg.bm25_depth, min(cfg.unlabeled_depth, cfg.bm25_depth))
    depth_dense = np.where(qtab["full"], cfg.dense_depth, min(cfg.unlabeled_depth, cfg.dense_depth))
    bm25_hits = bm25_top(qtexts, texts, int(depth_bm25.max(initial=0)))
    doc_emb, dense_hits = None, [[] for _ in qtexts]
    if cfg.dense_depth > 0 or cfg.drop_near_duplicates:
        ids = products["product_id"].astype(str).tolist()
        doc_emb, student = _catalog_vectors(student, ids, texts, cfg, runtime, catalog_cache)
        if cfg.dense_depth > 0:
            dense_hits = dense_top(encode_queries(student, qtexts), doc_emb, int(depth_dense.max(initial=0)))
    rows = []
    for i, (qid, q) in enumerate(zip(qtab["query_id"], qtab["query"])):
        for src, hits, depth in (("bm25", bm25_hits[i], depth_bm25[i]), ("dense", dense_hits[i], depth_dense[i])):
            rows.extend((qid, q, int(j), src) for j in hits[: int(depth)])
    mined = pd.DataFrame(rows, columns=["query_id", "query", "row", "source"])
    mined["product_id"] = products["product_id"].astype(str).to_numpy()[mined["row"].to_numpy()] if len(mined) else []
    return mined, doc_emb


def _catalog_vectors(student, ids: list[str], texts: list[str], cfg: DistillConfig, runtime: Runtime | None,
                     catalog_cache: Path | None):
    """(the catalog's vectors, the student that encoded them): ``cfg.student`` is loaded when ``student`` is None,
    and its encode is kept in ``catalog_cache`` under eval's key (see the module docstring)."""
    cache = None
    if student is None:
        student = load_student(cfg.student, runtime=runtime)
        if catalog_cache is not None:  # where eval looks for this model's catalog encode
            cache = Path(catalog_cache) / loaded_cache_key(resolve_model(cfg.student, runtime).path, student, ids, texts)
    return encode_catalog(student, ids, texts, cache=cache), student


def mine_to(out_dir: str | Path, cfg: DistillConfig, data_cfg: DataConfig, student=None, *,
            runtime: Runtime | None = None, catalog_cache: Path | None = None) -> dict:
    """Mine candidates for ``data_cfg``'s train queries → ``out_dir/candidates.parquet`` + manifest (kind
    "candidates", written last); returns the manifest (pairs, queries, by_source, data, distill settings).
    ``catalog_cache``: see :func:`mine_candidates`."""
    out_dir = Path(out_dir)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # a stale manifest never vouches for a new file
    cands = mine_candidates(load_esci(data_cfg), cfg, student=student, dev_fraction=data_cfg.dev_fraction, seed=data_cfg.seed,
                            runtime=runtime, catalog_cache=catalog_cache)
    write_parquet(out_dir / CANDIDATES_FILE, cands)
    return write_manifest(out_dir, "candidates", candidates=CANDIDATES_FILE, pairs=len(cands),
                          queries=int(cands["query_id"].nunique()),
                          by_source={str(k): int(v) for k, v in cands["source"].value_counts().items()},
                          data={"path": data_cfg.path, "fingerprint": data_fingerprint(data_cfg.path),
                                "dev_fraction": data_cfg.dev_fraction, "seed": data_cfg.seed},
                          distill=to_dict(cfg))


def _drop_near_duplicates(mined: pd.DataFrame, judged: pd.DataFrame, products: pd.DataFrame,
                          doc_emb: np.ndarray, threshold: float) -> pd.DataFrame:
    """Drop mined rows whose product embedding is within ``threshold`` cosine of one of the query's judged positives."""
    # catalog rows looked up once for all positives (a lookup per query took time in catalog size × queries)
    rows = pd.Index(products["product_id"].astype(str)).get_indexer(judged["product_id"].astype(str))
    pos = judged.assign(row=rows)[(judged["soft_label"] > 0).to_numpy() & (rows >= 0)]
    pos_row = pos["row"].to_numpy()
    pos_rows = {qid: pos_row[idx] for qid, idx in pos.groupby("query_id").indices.items()}
    mined_rows = mined["row"].to_numpy()
    keep = np.ones(len(mined), dtype=bool)
    for qid, idx in mined.groupby("query_id").indices.items():
        prow = pos_rows.get(qid)
        if prow is None or len(prow) == 0:
            continue
        mrows = mined_rows[idx]
        sims = doc_emb[mrows] @ doc_emb[prow].T
        is_judged = np.isin(mrows, prow)  # the same product is deduped later, not "near"
        keep[idx] = ~((sims.max(axis=1) >= threshold) & ~is_judged)
    dropped = int((~keep).sum())
    if dropped:
        log.info("dropped %d mined candidate(s) near-duplicating a judged positive", dropped)
    return mined[keep]
