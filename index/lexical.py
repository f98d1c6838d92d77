"""BM25 over product text with bm25s, persisted beside the dense index (no pickles).

bm25s builds a static sparse matrix, so removals are a weight mask applied at query time and an
addition (or update) re-indexes the corpus — a fraction of a second for catalogs of this size.

Queries are scored in batches as one sparse product with that matrix (SciPy): a batch of queries ×
terms times bm25s's terms × documents scores gives each query's score for the documents that share a
term with it, which is what bm25s's ``retrieve`` sums one query at a time into a dense array the size
of the catalog. At 1.8M products bm25s's NumPy path spends ~80 ms per query on that array, the product
~4 ms (``scripts/scale_run.py bm25``): it reads only the postings of the query's terms (bm25s's Numba
backend is fast too, but compiles for seconds in every process and orders ties differently). Batches
are cut so that the postings they read stay under ``BATCH_POSTINGS``, which bounds memory whatever the
number of queries. Scores are bm25s's; ties are broken by catalog order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reldistill.artifacts import atomic_path, write_parquet
from reldistill.errors import UserError

BM25_DIR = "bm25"
DOCS_FILE = "bm25_docs.parquet"
STOPWORDS = "en"
BATCH_POSTINGS = 20_000_000  # postings read per batch of queries (≈ 12 bytes each in the batch's score matrix)


def tokenize(texts: list[str]):
    """bm25s tokens of ``texts`` (English stopwords dropped), as the index and its queries are tokenized."""
    import bm25s

    return bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False, return_ids=False)


class BM25Index:
    """Lexical retriever: ``search(queries, k) -> (ids, scores)`` per query; zero-score documents are dropped."""

    def __init__(self, ids: list[str], texts: list[str], active: np.ndarray | None = None, retriever=None):
        self.ids = list(ids)
        self.texts = list(texts)
        self.active = np.ones(len(ids), dtype=np.float32) if active is None else np.array(active, dtype=np.float32)
        self._pos = {p: i for i, p in enumerate(self.ids)}
        self._set_retriever(retriever if retriever is not None else self._index(self.texts))

    @staticmethod
    def _index(texts: list[str]):
        import bm25s

        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False), show_progress=False)
        return retriever

    @classmethod
    def build(cls, product_ids, texts) -> BM25Index:
        ids = [str(p) for p in product_ids]
        texts = ["" if t is None else str(t) for t in texts]
        if len(ids) != len(texts):
            raise UserError(f"got {len(texts)} texts for {len(ids)} product ids — they must match one to one.")
        if not ids:
            raise UserError("cannot build a BM25 index from zero products — check the products file and locale.")
        if len(set(ids)) != len(ids):
            dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
            raise UserError(f"product_id {dup!r} appears more than once — product ids must be unique.")
        return cls(ids, texts)

    def __len__(self) -> int:
        return int(self.active.sum())

    def search(self, queries: list[str], k: int) -> tuple[list[list[str]], list[list[float]]]:
        """Top-``k`` product ids and BM25 scores for each query (only documents sharing a term), best first;
        equal scores in catalog order."""
        if k < 1:
            raise UserError(f"k must be at least 1, got {k}.")
        out_ids: list[list[str]] = []
        out_scores: list[list[float]] = []
        for batch in self._batches(list(queries)):
            for r in range(batch.shape[0]):
                docs, vals = self._row(batch, r)
                if len(vals) > k:  # the k-th best score, then every document at or above it, best first
                    kth = np.partition(vals, len(vals) - k)[len(vals) - k]
                    docs, vals = docs[vals >= kth], vals[vals >= kth]
                top = np.lexsort((docs, -vals))[:k]
                out_ids.append([self.ids[d] for d in docs[top].tolist()])
                out_scores.append(vals[top].astype(float).tolist())
        return out_ids, out_scores

    def score_pairs(self, queries: list[str], product_ids: list[str]) -> np.ndarray:
        """BM25 score of each (query, product) pair (0 for a product not in the index), queries in batches."""
        out = np.zeros(len(queries), dtype=np.float64)
        uniq = list(dict.fromkeys(queries))
        pairs = pd.DataFrame({"q": pd.Series(queries, dtype=object).map({q: i for i, q in enumerate(uniq)}),
                              "row": pd.Series(list(map(str, product_ids)), dtype=object).map(self._pos)})
        pairs = pairs[pairs["row"].notna()]
        start = 0
        for batch in self._batches(uniq):
            sel = pairs[(pairs["q"] >= start) & (pairs["q"] < start + batch.shape[0])]
            rows = sel["row"].to_numpy(np.int64)
            vals = np.asarray(batch[sel["q"].to_numpy(np.int64) - start, rows]).ravel()
            out[sel.index.to_numpy()] = vals * self.active[rows]
            start += batch.shape[0]
        return out

    def _row(self, batch: sp.csr_matrix, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(document rows, scores) of one query's row in a batch: active documents with a positive score."""
        a, b = batch.indptr[r], batch.indptr[r + 1]
        docs, vals = batch.indices[a:b], batch.data[a:b]
        keep = (vals > 0) & (self.active[docs] > 0)
        return docs[keep], vals[keep]

    def _batches(self, queries: list[str]):
        """Score matrices (queries × documents, CSR) for consecutive batches of ``queries``, each batch
        reading at most ``BATCH_POSTINGS`` postings (a single query may read more)."""
        if not queries:
            return
        postings, vocab = self._postings, self.retriever.vocab_dict
        rows, cols = [], []
        for i, toks in enumerate(tokenize(queries)):
            term_ids = [t for t in map(vocab.get, toks) if t is not None and t < postings.shape[0]]
            rows.extend([i] * len(term_ids))
            cols.extend(term_ids)
        # a repeated query term counts once per occurrence, as in bm25s (duplicate entries are summed)
        qmat = sp.csr_matrix((np.ones(len(cols), dtype=postings.dtype), (rows, cols)), shape=(len(queries), postings.shape[0]))
        cost = np.cumsum(np.bincount(np.repeat(np.arange(len(queries)), np.diff(qmat.indptr)),
                                     weights=np.diff(postings.indptr)[qmat.indices], minlength=len(queries)))
        start = 0
        while start < len(queries):
            done = cost[start - 1] if start else 0.0
            end = max(start + 1, int(np.searchsorted(cost, done + BATCH_POSTINGS, side="right")))
            yield (qmat[start:end] @ postings).tocsr()
            start = end

    def _set_retriever(self, retriever) -> None:
        """Keep ``retriever`` and its scores as a terms × documents CSR matrix (bm25s's CSC arrays, not copied)."""
        self.retriever = retriever
        s = retriever.scores
        self._postings = sp.csr_matrix((s["data"], s["indices"], s["indptr"]), shape=(len(s["indptr"]) - 1, s["num_docs"]))

    def add(self, product_ids, texts) -> None:
        """Add or update products, then re-index (new text is searchable at once)."""
        for p, t in zip(map(str, product_ids), texts):
            if p in self._pos:
                i = self._pos[p]
                self.texts[i] = str(t)
                self.active[i] = 1.0
            else:
                self._pos[p] = len(self.ids)
                self.ids.append(p)
                self.texts.append(str(t))
                self.active = np.append(self.active, np.float32(1.0))
        self._set_retriever(self._index(self.texts))

    def remove(self, product_ids) -> int:
        """Mask products out of results (no re-index); returns how many were active."""
        n = 0
        for p in map(str, product_ids):
            i = self._pos.get(p)
            if i is not None and self.active[i] > 0:
                self.active[i] = 0.0
                n += 1
        return n

    def save(self, directory: str | Path) -> Path:
        """Write bm25/ (bm25s arrays + vocab, no pickles) and bm25_docs.parquet, each atomically."""
        d = Path(directory)
        with atomic_path(d / BM25_DIR) as tmp:
            self.retriever.save(str(tmp), show_progress=False, allow_pickle=False)
        write_parquet(d / DOCS_FILE, pd.DataFrame({"product_id": self.ids, "text": self.texts, "active": self.active}))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> BM25Index:
        import bm25s

        d = Path(directory)
        if not (d / BM25_DIR).is_dir() or not (d / DOCS_FILE).is_file():
            raise UserError(f"{d} has no BM25 index ({BM25_DIR}/, {DOCS_FILE}) — rebuild it with `reldistill index build`.")
        try:
            retriever = bm25s.BM25.load(str(d / BM25_DIR), allow_pickle=False, show_progress=False, verbosity=0)
            docs = pd.read_parquet(d / DOCS_FILE)
        except Exception:  # noqa: BLE001 - any failure here means a damaged file
            raise UserError(f"the BM25 index in {d} is unreadable (corrupted) — rebuild it with `reldistill index build`.") from None
        if retriever.scores.get("num_docs") != len(docs):
            raise UserError(f"the BM25 index in {d} does not match {DOCS_FILE} — rebuild it with `reldistill index build`.")
        return cls(docs["product_id"].astype(str).tolist(), docs["text"].astype(str).tolist(),
                   docs["active"].to_numpy(np.float32), retriever=retriever)
