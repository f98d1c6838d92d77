"""What eval needs beside the served search pipelines: each student's catalog vectors and Task-1 pair scores.

Full-catalog retrieval is always `SearchPipeline.search_many` (reldistill.retrieval); here only the
ESCI Task-1 scoring of judged (query, product) pairs and the per-student catalog vectors, cached under
``<run>/eval/cache`` (the index build's sharded encoding) so a second eval does not re-encode the catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reldistill.artifacts import read_json
from reldistill.index.catalog import Catalog
from reldistill.index.dense import DenseIndex
from reldistill.retrieval.build import encode_catalog
from reldistill.student.catalog_vectors import load_vectors, loaded_cache_key
from reldistill.student.identity import model_identity

log = logging.getLogger(__name__)


def vectors_from_index(index_dir: Path, student: str, product_ids: Sequence[str], texts: Sequence[str]) -> np.ndarray | None:
    """The catalog vectors a run's retrieval index already holds for ``student``, or None.

    Only reused when the index was built with the same weights (student identity), stores exact
    vectors (flat or HNSW, not IVF-PQ), and holds every product with the very same text.
    """
    if not (index_dir / "manifest.json").is_file():
        return None
    try:
        m = read_json(index_dir / "manifest.json")
        ident = model_identity(student)
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


def catalog_vectors(name: str, model, model_path: str, product_ids: Sequence[str], texts: Sequence[str],
                    cache_dir: Path | None = None, batch_size: int = 64, index_dir: Path | None = None,
                    student: str | None = None) -> tuple[np.ndarray, str]:
    """(the catalog encoded by a student, where the vectors came from): the eval cache, the run's index,
    the vectors saved with the student folder, else a fresh encode — the index build's resumable, sharded
    ``encode_catalog`` under the same ``cache_key`` (model identity, backend, catalog, precision), so
    students with identical weights share one encoding."""
    runtime = getattr(model, "reldistill_runtime", None)  # the one the student was loaded with (its precision)
    cached = cache_dir / loaded_cache_key(model_path, model, list(product_ids), list(texts)) if cache_dir else None
    emb, source = None, "encoded"
    if cached is not None and any(cached.glob("shard-*.npy")):
        emb, source = encode_catalog(model, list(product_ids), list(texts), cache=cached, batch_size=batch_size), "eval cache"
    elif index_dir is not None and student is not None:
        emb = vectors_from_index(index_dir, student, product_ids, texts)
        source = f"retrieval index {index_dir}"
    if emb is None and Path(model_path).is_dir():
        emb = load_vectors(model_path, list(product_ids), list(texts), runtime=runtime)
        source = f"vectors saved with {model_path}"
    if emb is None:
        log.info("encoding %d catalog texts with %s", len(texts), name)
        emb = encode_catalog(model, list(product_ids), list(texts), cache=cached, batch_size=batch_size)
    return np.ascontiguousarray(emb, dtype=np.float32), source


def dense_pair_scores(query_vectors: np.ndarray, catalog: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """Cosine similarity of each (query vector, catalog row) pair (Task-1 reranking of judged candidates)."""
    return np.einsum("ij,ij->i", np.asarray(query_vectors, np.float64), catalog[np.asarray(rows, dtype=np.int64)].astype(np.float64))
