"""BM25 over product text with bm25s, persisted beside the dense index (no pickles).

bm25s builds a static sparse matrix, so removals are a weight mask applied at query time and an
addition (or update) re-indexes the corpus — a fraction of a second for catalogs of this size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.artifacts import atomic_path, write_parquet
from reldistill.errors import UserError

BM25_DIR = "bm25"
DOCS_FILE = "bm25_docs.parquet"
STOPWORDS = "en"


def _tokenize(texts: list[str]):
    import bm25s

    return bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False, return_ids=False)


class BM25Index:
    """Lexical retriever: ``search(queries, k) -> (ids, scores)`` per query; zero-score documents are dropped."""

    def __init__(self, ids: list[str], texts: list[str], active: np.ndarray | None = None, retriever=None):
        self.ids = list(ids)
        self.texts = list(texts)
        self.active = np.ones(len(ids), dtype=np.float32) if active is None else np.array(active, dtype=np.float32)
        self._pos = {p: i for i, p in enumerate(self.ids)}
        self.retriever = retriever if retriever is not None else self._index(self.texts)

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
        """Top-``k`` product ids and BM25 scores for each query (only documents sharing a term)."""
        if k < 1:
            raise UserError(f"k must be at least 1, got {k}.")
        if not queries:
            return [], []
        fetch = min(k, len(self.ids))
        docs, scores = self.retriever.retrieve(_tokenize(list(queries)), k=fetch, show_progress=False, n_threads=0,
                                               weight_mask=self.active if not self.active.all() else None)
        out_ids, out_scores = [], []
        for drow, srow in zip(docs, scores):
            keep = [(self.ids[int(d)], float(s)) for d, s in zip(drow, srow) if s > 0 and self.active[int(d)] > 0]
            out_ids.append([p for p, _ in keep])
            out_scores.append([s for _, s in keep])
        return out_ids, out_scores

    def score_pairs(self, queries: list[str], product_ids: list[str]) -> np.ndarray:
        """BM25 score of each (query, product) pair (0 for a product not in the index), one catalog pass per query."""
        out = np.zeros(len(queries), dtype=np.float64)
        uniq = list(dict.fromkeys(queries))
        toks = dict(zip(uniq, _tokenize(uniq)))
        full: dict[str, np.ndarray] = {}
        for i, (q, p) in enumerate(zip(queries, product_ids)):
            if q not in full:
                full[q] = self.retriever.get_scores(toks[q]) * self.active if toks[q] else np.zeros(len(self.ids))
            row = self._pos.get(str(p))
            out[i] = float(full[q][row]) if row is not None else 0.0
        return out

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
        self.retriever = self._index(self.texts)

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
