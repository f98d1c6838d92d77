"""The searchers eval compares: BM25 (bm25s), exact dense search (FAISS flat inner product), RRF fusion.

Runs are plain ``{query_id: {product_id: score}}`` dicts, higher score = better, at most ``depth``
products per query. Dense catalog embeddings are cached per student under ``<run>/eval/cache`` so a
second eval of the same run does not re-encode the catalog.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reldistill.artifacts import atomic_path
from reldistill.student.catalog_vectors import catalog_digest, load_vectors, weights_digest

log = logging.getLogger(__name__)

RunDict = dict[str, dict[str, float]]


class BM25Searcher:
    """Lucene-style BM25 over the catalog text (bm25s; English stopwords, lower-cased, no stemming)."""

    def __init__(self, product_ids: Sequence[str], texts: Sequence[str]):
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG
        self.product_ids = list(product_ids)
        self._bm25s = bm25s
        self.retriever = bm25s.BM25()
        self.retriever.index(self._tokenize(texts), show_progress=False)

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return self._bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)

    def search(self, query_ids: Sequence[str], queries: Sequence[str], depth: int) -> RunDict:
        """Top ``depth`` products per query."""
        k = min(depth, len(self.product_ids))
        out: RunDict = {}
        for qid, toks in zip(query_ids, self._tokenize(queries)):
            scores = self.retriever.get_scores(toks) if toks else np.zeros(len(self.product_ids), np.float32)
            hits = top_k(scores, self.product_ids, k)
            out[qid] = {p: s for p, s in hits.items() if s > 0}  # BM25 returns only products sharing a term
        return out

    def score_pairs(self, queries: Sequence[str], product_rows: Sequence[int]) -> np.ndarray:
        """BM25 score of each (query, catalog row) pair (Task-1 reranking of judged candidates)."""
        out = np.zeros(len(queries), dtype=np.float64)
        cache: dict[str, np.ndarray] = {}
        uniq = sorted(set(queries))
        toks = dict(zip(uniq, self._tokenize(uniq)))
        for i, (q, row) in enumerate(zip(queries, product_rows)):
            if q not in cache:
                cache[q] = self.retriever.get_scores(toks[q]) if toks[q] else np.zeros(len(self.product_ids))
            out[i] = cache[q][row]
        return out


def top_k(scores: np.ndarray, ids: Sequence[str], k: int) -> dict[str, float]:
    """The ``k`` best (id, score) of a score vector, best first; ties broken by catalog order."""
    scores = np.asarray(scores)
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = part[np.lexsort((part, -scores[part]))]
    return {ids[i]: float(scores[i]) for i in order}


def model_digest(model_path: str | Path) -> str:
    """A short fingerprint of a sentence-transformers folder (its weight files; its path when it has none)."""
    return (weights_digest(model_path) or hashlib.sha256(str(Path(model_path).resolve()).encode()).hexdigest())[:16]


def encode_with_progress(model, texts: list[str], batch_size: int, description: str, chunk: int = 512) -> np.ndarray:
    """Document embeddings of ``texts`` in chunks, with a docs/s progress bar."""
    from reldistill.progress import progress_bar
    from reldistill.student import encode_documents

    parts = []
    with progress_bar(len(texts), description, "docs") as advance:
        for start in range(0, len(texts), chunk):
            part = texts[start:start + chunk]
            parts.append(encode_documents(model, part, batch_size=batch_size))
            advance(len(part))
    return np.concatenate(parts) if parts else np.zeros((0, model.get_embedding_dimension()), np.float32)


def vectors_from_index(index_dir: Path, student: str, product_ids: Sequence[str], texts: Sequence[str]) -> np.ndarray | None:
    """The catalog vectors a run's retrieval index already holds for ``student``, or None.

    Only reused when the index was built with the same weights (student identity), stores exact
    vectors (flat or HNSW, not IVF-PQ), and holds every product with the very same text.
    """
    if not (index_dir / "manifest.json").is_file():
        return None
    try:
        from reldistill.artifacts import read_json
        from reldistill.retrieval.build import student_identity
        from reldistill.retrieval.catalog import Catalog
        from reldistill.retrieval.dense import DenseIndex

        m = read_json(index_dir / "manifest.json")
        ident = student_identity(student)
        if m.get("student") != ident or m.get("index_kind") not in ("flat", "hnsw"):
            return None
        catalog = Catalog.load(index_dir)
        if any(p not in catalog or catalog.text(p) != t for p, t in zip(product_ids, texts)):
            return None
        dense = DenseIndex.load(index_dir, expect_model=ident)
        return np.stack([dense.vector(p) for p in product_ids]).astype(np.float32)
    except Exception as e:  # noqa: BLE001 - any mismatch or unreadable index means "encode afresh"
        log.info("not reusing %s: %s", index_dir, e)
        return None


class DenseSearcher:
    """A student's catalog embeddings in a FAISS exact inner-product index (vectors are L2-normalised)."""

    def __init__(self, name: str, model, model_path: str, product_ids: Sequence[str], texts: Sequence[str],
                 cache_dir: Path | None = None, batch_size: int = 64, index_dir: Path | None = None,
                 student: str | None = None):
        import faiss

        self.name = name
        self.model = model
        self.product_ids = list(product_ids)
        self.batch_size = batch_size
        # keyed by weights, not by system name: students with identical weights share one encoding
        key = f"emb-{model_digest(model_path)}-{catalog_digest(self.product_ids, texts)[:16]}"
        cached = cache_dir / f"{key}.npy" if cache_dir else None
        self.source = "encoded"
        emb = None
        if cached is not None and cached.is_file():
            emb = np.load(cached)
            self.source = "eval cache"
        elif index_dir is not None and student is not None:
            emb = vectors_from_index(index_dir, student, self.product_ids, texts)
            if emb is not None:
                self.source = f"retrieval index {index_dir}"
        if emb is None and Path(model_path).is_dir():
            emb = load_vectors(model_path, self.product_ids, list(texts))
            if emb is not None:
                self.source = f"vectors saved with {model_path}"
        if emb is None:
            log.info("encoding %d catalog texts with %s", len(texts), name)
            emb = encode_with_progress(model, list(texts), batch_size, f"{name}: encode catalog")
            if cached is not None:
                with atomic_path(cached) as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, emb)
        self.from_cache = self.source != "encoded"
        self.embeddings = np.ascontiguousarray(emb, dtype=np.float32)
        self.index = faiss.IndexFlatIP(self.embeddings.shape[1])
        self.index.add(self.embeddings)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        from reldistill.student import encode_queries

        return encode_queries(self.model, list(queries), batch_size=self.batch_size)

    def search(self, query_ids: Sequence[str], queries: Sequence[str], depth: int) -> RunDict:
        q = self.encode_queries(queries)
        k = min(depth, len(self.product_ids))
        scores, rows = self.index.search(q, k)
        return {qid: {self.product_ids[r]: float(s) for s, r in zip(sc, rw) if r >= 0}
                for qid, sc, rw in zip(query_ids, scores, rows)}

    def score_pairs(self, queries: Sequence[str], product_rows: Sequence[int]) -> np.ndarray:
        """Cosine similarity of each (query, catalog row) pair."""
        uniq = sorted(set(queries))
        qe = dict(zip(uniq, self.encode_queries(uniq)))
        return np.array([float(qe[q] @ self.embeddings[r]) for q, r in zip(queries, product_rows)])


def rrf(runs: Sequence[RunDict], k: int, depth: int) -> RunDict:
    """Reciprocal Rank Fusion (Cormack et al. 2009): score = Σ 1 / (k + rank), rank 1-based, via ranx.fuse."""
    from ranx import Run, fuse

    qids = sorted(set().union(*(r.keys() for r in runs)))
    rx = [Run.from_dict({q: r.get(q) or {} for q in qids}) for r in runs]
    fused = fuse(runs=rx, method="rrf", params={"k": k}).to_dict()
    return {q: dict(sorted(fused.get(q, {}).items(), key=lambda kv: -kv[1])[:depth]) for q in qids}


def rerank_run(run: RunDict, teacher_scores: dict[tuple[str, str], float], top: int) -> RunDict:
    """Reorder each query's first ``top`` results by teacher score; the rest keep their order below them."""
    out: RunDict = {}
    for q, docs in run.items():
        ranked = sorted(docs.items(), key=lambda kv: -kv[1])
        head, tail = ranked[:top], ranked[top:]
        new: dict[str, float] = {}
        for p, _ in sorted(head, key=lambda kv: -teacher_scores[(q, kv[0])]):
            new[p] = 2.0 + teacher_scores[(q, p)]  # teacher probabilities lie in [0, 1]: above every tail score
        for i, (p, _) in enumerate(tail):
            new[p] = 1.0 / (2 + i)
        out[q] = new
    return out
