"""FAISS dense index whose every vector carries its product id (IndexIDMap2 + an explicit key table).

Kinds: ``flat`` (exact inner product, the default), ``hnsw`` and ``ivfpq`` for large catalogs; ``ivfpq``
can re-score its shortlist on scalar-quantised or full vectors (``index.ivf_refine``, FAISS IndexRefine).
Vectors are L2-normalised student embeddings, so inner product is cosine similarity. Products can
be added, updated and removed without a rebuild; HNSW and IVF-PQ cannot delete in place, so their
removed keys become tombstones filtered out of results (a rebuild compacts them). ``save`` writes each file atomically and the manifest
last (with the FAISS file's checksum); ``load`` refuses a manifest that does not match.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.artifacts import atomic_path, file_fingerprint, read_json, write_json, write_parquet
from reldistill.errors import UserError
from reldistill.recipe.retrieval import INDEX_KINDS, IndexConfig

FAISS_FILE = "dense.faiss"
IDS_FILE = "dense_ids.parquet"
DENSE_MANIFEST = "dense.json"


IVF_TRAIN_PER_LIST = 40  # k-means trains on at most this many vectors per list (FAISS asks for >= 39; it caps at 256)
SMALL_QUERY_BATCH = 8  # up to this many query vectors search on one OpenMP thread


def faiss_module():
    """The ``faiss`` module, imported on first use (the process default OpenMP thread count is read first)."""
    import faiss

    default_omp_threads()
    return faiss


@functools.cache
def default_omp_threads() -> int:
    """The process default OpenMP thread count, read once on a fresh thread: the caller's own setting may already be 1."""
    import faiss

    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
    t.start()
    t.join()
    return seen[0]


def _search_threads(n_queries: int) -> None:
    """One OpenMP thread for a few query vectors (waking the pool for ~3M multiply-adds costs more than it
    saves: 0.6 ms vs 37 ms p50 for one query over 8.5k vectors on a busy 2-core machine), all of them for
    batches. OpenMP's thread count is per calling thread, so concurrent requests do not disturb each other."""
    faiss = faiss_module()
    faiss.omp_set_num_threads(1 if n_queries <= SMALL_QUERY_BATCH else default_omp_threads())


def _as_matrix(vecs, dim: int | None, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(vecs, dtype=np.float32))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise UserError(f"{what} must be a 2-D array of vectors, got shape {arr.shape}.")
    if dim is not None and arr.shape[1] != dim:
        raise UserError(f"{what} have dimension {arr.shape[1]} but the index holds dimension {dim} — "
                        "encode with the same student the index was built with, or rebuild the index.")
    if not np.isfinite(arr).all():
        raise UserError(f"{what} contain NaN or infinite values — check the encoder output.")
    return arr


def _check_ids(ids, what: str) -> list[str]:
    out = [str(i) for i in ids]
    if any(not i for i in out):
        raise UserError(f"{what} contain an empty product id — every vector needs its product_id.")
    seen: set[str] = set()
    for i in out:
        if i in seen:
            raise UserError(f"{what} list product_id {i!r} more than once — product ids must be unique.")
        seen.add(i)
    return out


class DenseIndex:
    """Product embeddings in FAISS, keyed by product id. Build with :meth:`build`, or :meth:`load` a saved one."""

    def __init__(self, index, keys: dict[str, int], next_key: int, *, kind: str, dim: int,
                 model: str | None = None, normalized: bool = True, tombstones: set[int] | None = None,
                 config: IndexConfig | None = None):
        self.index = index
        self.kind = kind
        self.dim = dim
        self.model = model
        self.normalized = normalized
        self.config = config or IndexConfig(kind=kind)
        self._key_of = dict(keys)  # product_id -> int64 FAISS key
        self._id_of = {k: p for p, k in self._key_of.items()}
        self._next_key = next_key
        self._tombstones = set(tombstones or ())

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, embeddings, product_ids, kind: str = "flat", *, model: str | None = None,
              config: IndexConfig | None = None, normalized: bool = True) -> DenseIndex:
        """Index ``embeddings`` (n × dim float32, L2-normalised) under ``product_ids`` (unique strings)."""
        faiss = faiss_module()
        if kind not in INDEX_KINDS:
            raise UserError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}.")
        cfg = config or IndexConfig(kind=kind)
        ids = _check_ids(product_ids, "product ids")
        vecs = _as_matrix(embeddings, None, "embeddings")
        if len(ids) != len(vecs):
            raise UserError(f"got {len(vecs)} embeddings for {len(ids)} product ids — they must match one to one.")
        if len(ids) == 0:
            raise UserError("cannot build an index from zero products — check the products file and locale.")
        dim = vecs.shape[1]
        if kind == "flat":
            base = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = cfg.hnsw_ef_construction
            base.hnsw.efSearch = cfg.hnsw_ef_search
        else:
            if dim % cfg.pq_m:
                raise UserError(f"index.pq_m={cfg.pq_m} must divide the embedding dimension {dim} — pick a divisor.")
            nlist = cfg.ivf_nlist or max(1, int(4 * np.sqrt(len(vecs))))
            nlist = min(nlist, len(vecs))
            if len(vecs) < max(nlist, 2 ** cfg.pq_bits):
                raise UserError(f"ivfpq needs at least {max(nlist, 2 ** cfg.pq_bits)} products to train, got {len(vecs)} — use kind flat or hnsw.")
            quantizer = faiss.IndexFlatIP(dim)
            base = faiss.IndexIVFPQ(quantizer, dim, nlist, cfg.pq_m, cfg.pq_bits, faiss.METRIC_INNER_PRODUCT)
            sample = ivf_training_sample(vecs, nlist)
            base.train(sample)
            base.nprobe = cfg.ivf_nprobe
            base.make_direct_map()  # lets /similar reconstruct a stored vector
            if cfg.ivf_refine != "none":
                base = _refined(base, cfg, sample)
        index = faiss.IndexIDMap2(base)
        keys = np.arange(len(ids), dtype=np.int64)
        index.add_with_ids(vecs, keys)
        return cls(index, {p: int(k) for p, k in zip(ids, keys)}, len(ids), kind=kind, dim=dim, model=model,
                   normalized=normalized, config=cfg)

    def tune(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Set the search-time knob of an HNSW (``ef_search``) or IVF-PQ (``nprobe``) index; flat has none."""
        inner = faiss_module().downcast_index(self.index.index)
        if self.kind == "hnsw" and ef_search is not None:
            inner.hnsw.efSearch = int(ef_search)
            self.config = dataclasses.replace(self.config, hnsw_ef_search=int(ef_search))
        elif self.kind == "ivfpq" and nprobe is not None:
            ivf = faiss_module().downcast_index(inner.base_index) if isinstance(inner, faiss_module().IndexRefine) else inner
            ivf.nprobe = int(nprobe)
            self.config = dataclasses.replace(self.config, ivf_nprobe=int(nprobe))

    # ---- queries ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._key_of)

    def __contains__(self, product_id: str) -> bool:
        return str(product_id) in self._key_of

    @property
    def product_ids(self) -> list[str]:
        return list(self._key_of)

    def search(self, query_vecs, k: int) -> tuple[list[list[str]], list[list[float]]]:
        """Top-``k`` product ids and inner-product scores per query vector, best first."""
        q = _as_matrix(query_vecs, self.dim, "query vectors")
        if k < 1:
            raise UserError(f"k must be at least 1, got {k}.")
        live = len(self._key_of)
        if live == 0:
            return [[] for _ in range(len(q))], [[] for _ in range(len(q))]
        fetch = min(k + len(self._tombstones), self.index.ntotal)
        _search_threads(len(q))
        scores, keys = self.index.search(q, fetch)
        out_ids, out_scores = [], []
        for srow, krow in zip(scores, keys):
            ids, sc = [], []
            for s, key in zip(srow, krow):
                pid = self._id_of.get(int(key)) if key >= 0 else None
                if pid is None:
                    continue
                ids.append(pid)
                sc.append(float(s))
                if len(ids) == k:
                    break
            out_ids.append(ids)
            out_scores.append(sc)
        return out_ids, out_scores

    def vector(self, product_id: str) -> np.ndarray:
        """The stored (or, for ivfpq, reconstructed) vector of one product."""
        key = self._key_of.get(str(product_id))
        if key is None:
            raise KeyError(product_id)
        return self.index.reconstruct(key)

    # ---- updates ------------------------------------------------------------------------------
    def add(self, ids, vecs) -> None:
        """Add products (an id already present is updated in place of its old vector); searchable at once."""
        ids = _check_ids(ids, "added product ids")
        arr = _as_matrix(vecs, self.dim, "added vectors")
        if len(ids) != len(arr):
            raise UserError(f"got {len(arr)} vectors for {len(ids)} product ids — they must match one to one.")
        existing = [i for i in ids if i in self._key_of]
        if existing:
            self.remove(existing)
        keys = np.arange(self._next_key, self._next_key + len(ids), dtype=np.int64)
        self.index.add_with_ids(arr, keys)
        self._next_key += len(ids)
        for p, k in zip(ids, keys):
            self._key_of[p] = int(k)
            self._id_of[int(k)] = p

    def remove(self, ids) -> int:
        """Remove products by id (unknown ids are ignored); returns how many were removed."""
        keys = [self._key_of.pop(str(i)) for i in ids if str(i) in self._key_of]
        if not keys:
            return 0
        for k in keys:
            self._id_of.pop(k, None)
        if self.kind != "flat":  # HNSW/IVF-PQ behind an id map cannot delete in place: tombstone, filtered at search time
            self._tombstones.update(keys)
        else:
            self.index.remove_ids(np.asarray(keys, dtype=np.int64))
        return len(keys)

    # ---- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write dense.faiss, dense_ids.parquet, then dense.json (manifest with checksum) — each atomically."""
        faiss = faiss_module()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / FAISS_FILE) as tmp:
            faiss.write_index(self.index, str(tmp))
        keys = pd.DataFrame({"product_id": list(self._key_of), "key": np.asarray(list(self._key_of.values()), dtype=np.int64)})
        write_parquet(d / IDS_FILE, keys)
        write_json(d / DENSE_MANIFEST, {
            "kind": self.kind, "dim": self.dim, "model": self.model, "normalized": self.normalized,
            "metric": "inner_product", "count": len(self), "ntotal": int(self.index.ntotal),
            "next_key": self._next_key, "checksum": file_fingerprint(d / FAISS_FILE),
            "config": {k: getattr(self.config, k) for k in self.config.__dataclass_fields__},
        })
        return d

    @classmethod
    def load(cls, directory: str | Path, expect_model: str | None = None, expect_dim: int | None = None) -> DenseIndex:
        """Load a saved index; a missing/corrupted file or a model/dimension mismatch is a UserError."""
        faiss = faiss_module()
        d = Path(directory)
        mpath = d / DENSE_MANIFEST
        if not mpath.is_file():
            raise UserError(f"{d} has no {DENSE_MANIFEST} — it is not a finished dense index; run `reldistill index build`.")
        m = read_json(mpath)
        try:
            kind, dim, count = str(m["kind"]), int(m["dim"]), int(m["count"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{mpath} lacks kind/dim/count — rebuild the index with `reldistill index build`.") from None
        if expect_dim is not None and int(expect_dim) != dim:
            raise UserError(f"the index in {d} holds {dim}-dimensional vectors (student {m.get('model')!r}) but the "
                            f"student in use gives {expect_dim} dimensions — rebuild the index with this student "
                            "(`reldistill index build --student ...`) or use the student it was built with.")
        if expect_model is not None and m.get("model") is not None and str(expect_model) != str(m["model"]):
            raise UserError(f"the index in {d} was built with student {m['model']!r}, not {expect_model!r} — "
                            "rebuild the index with this student or load the matching one.")
        fpath, ipath = d / FAISS_FILE, d / IDS_FILE
        for p in (fpath, ipath):
            if not p.is_file():
                raise UserError(f"{p} is missing — the index is incomplete; rebuild it with `reldistill index build`.")
        if file_fingerprint(fpath) != m.get("checksum"):
            raise UserError(f"{fpath} does not match the checksum in {mpath} (corrupted or replaced) — rebuild the index.")
        try:
            index = faiss.read_index(str(fpath))
        except RuntimeError:
            raise UserError(f"{fpath} is not a readable FAISS index (corrupted) — rebuild the index.") from None
        try:
            table = pd.read_parquet(ipath)
        except Exception:  # noqa: BLE001 - any parquet failure is a corrupted file
            raise UserError(f"{ipath} is not a readable parquet file (corrupted) — rebuild the index.") from None
        if index.d != dim or len(table) != count or not {"product_id", "key"} <= set(table.columns):
            raise UserError(f"{d}: the FAISS file, id table and manifest disagree (dimension or count) — rebuild the index.")
        keys = dict(zip(table["product_id"].astype(str), table["key"].astype(np.int64).map(int)))
        if len(keys) != len(table):
            raise UserError(f"{ipath} lists a product id more than once — rebuild the index.")
        if not isinstance(index, faiss.IndexIDMap2):
            raise UserError(f"{fpath} is not a reldistill id-mapped FAISS index — rebuild the index.")
        stored = set(faiss.vector_to_array(index.id_map).tolist()) if index.ntotal else set()
        if not set(keys.values()) <= stored:
            raise UserError(f"{ipath} names vectors the FAISS file does not hold — rebuild the index.")
        cfg_fields = {k: v for k, v in (m.get("config") or {}).items() if k in IndexConfig.__dataclass_fields__}
        cfg = IndexConfig(**cfg_fields) if cfg_fields else IndexConfig(kind=kind)
        dense = cls(index, keys, int(m.get("next_key", max(stored, default=-1) + 1)), kind=kind,
                    dim=dim, model=m.get("model"), normalized=bool(m.get("normalized", True)),
                    tombstones=stored - set(keys.values()), config=cfg)
        dense.tune(ef_search=cfg.hnsw_ef_search, nprobe=cfg.ivf_nprobe)
        return dense


def _refined(ivf, cfg: IndexConfig, sample: np.ndarray):
    """``ivf`` (trained, empty) behind FAISS's IndexRefine: its top k × ``refine_k_factor`` hits re-scored on a
    second copy of the vectors (``index.ivf_refine``: sq8 / fp16 scalar-quantised, or flat)."""
    faiss = faiss_module()
    if cfg.ivf_refine == "flat":
        refine = faiss.IndexFlatIP(ivf.d)
    else:
        qtype = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}[cfg.ivf_refine]
        refine = faiss.IndexScalarQuantizer(ivf.d, qtype, faiss.METRIC_INNER_PRODUCT)
        refine.train(sample)
    index = faiss.IndexRefine(ivf, refine)
    index.k_factor = float(cfg.refine_k_factor)
    return index


def ivf_training_sample(vecs: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of at most ``IVF_TRAIN_PER_LIST * nlist`` rows to train IVF-PQ on (all rows when fewer).

    At 1.8M products FAISS alone would cluster 1.4M vectors (256 per list) into 5.4k lists: hours of k-means
    on 2 cores. 40 per list (FAISS warns below 39) is a sixth of that work; only the sample is copied.
    """
    cap = IVF_TRAIN_PER_LIST * nlist
    if len(vecs) <= cap:
        return vecs
    rows = np.sort(np.random.default_rng(seed).choice(len(vecs), cap, replace=False))
    return np.ascontiguousarray(vecs[rows])


def exact_top_k(query_vecs, doc_vecs, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row indices) of the exact inner-product top-``k`` documents per query, best first.

    FAISS flat search (blocked inside FAISS): no queries × catalog matrix is held in memory.
    """
    q = _as_matrix(query_vecs, None, "query vectors")
    d = _as_matrix(doc_vecs, q.shape[1] if len(q) else None, "document vectors")
    k = min(int(k), len(d))
    if k < 1 or len(q) == 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    index = faiss_module().IndexFlatIP(d.shape[1])
    index.add(d)
    return index.search(q, k)
