"""A student's catalog encoding saved beside its weights, so later stages need not encode the catalog again.

Distillation evaluates the student on the full catalog (dev nDCG@10); the vectors of the checkpoint it
keeps are written next to the saved model. The index build and `eval` reuse them only when the
weights (sha256 of the weight files), the catalog (product ids + texts) and the encoding precision
(fp32 or bf16 autocast under the runtime's student precision, see ``reldistill.precision.student_dtype``) are the
same.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reldistill.artifacts import atomic_path
from reldistill.precision import student_dtype
from reldistill.settings import Runtime
from reldistill.student.identity import model_identity, weights_digest

log = logging.getLogger(__name__)

VECTORS_FILE = "catalog-vectors.npy"
META_FILE = "catalog-vectors.json"


def catalog_digest(ids: Sequence[str], texts: Sequence[str]) -> str:
    """sha256 over the catalog's (product id, text) pairs in order."""
    h = hashlib.sha256()
    for i, t in zip(ids, texts):
        h.update(str(i).encode() + b"\0" + str(t).encode() + b"\1")
    return h.hexdigest()


def encode_precision(runtime: Runtime | None = None) -> str:
    """The student's encoding precision under ``runtime`` ('float32' or 'bfloat16'): part of every catalog-vector
    cache key."""
    return str(student_dtype(runtime=runtime)).removeprefix("torch.")


def cache_key(model: str | Path, ids: Sequence[str], texts: Sequence[str], backend: str = "torch", *,
              runtime: Runtime | None = None) -> str:
    """What a catalog encoding depends on, as a file name: model identity, backend, catalog digest, precision."""
    return (f"{model_identity(model).replace('/', '_')}-{backend}-{catalog_digest(ids, texts)[:16]}-"
            f"{encode_precision(runtime)}")


def loaded_cache_key(model_path: str | Path, model, ids: Sequence[str], texts: Sequence[str]) -> str:
    """``cache_key`` of a loaded student: its backend and the runtime it was loaded with (the key eval and mining share)."""
    return cache_key(model_path, ids, texts, getattr(model, "reldistill_backend", "torch"),
                     runtime=getattr(model, "reldistill_runtime", None))


def save_vectors(model_dir: str | Path, ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray, *,
                 runtime: Runtime | None = None) -> None:
    """Write ``vectors`` (one row per product, in ``ids`` order) beside the weights in ``model_dir``."""
    d = Path(model_dir)
    w = weights_digest(d)
    if w is None or len(vectors) != len(ids):
        return
    with atomic_path(d / VECTORS_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    meta = {"weights": w, "catalog": catalog_digest(ids, texts), "precision": encode_precision(runtime), "count": len(ids),
            "dim": int(vectors.shape[1])}
    with atomic_path(d / META_FILE) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_vectors(model_dir: str | Path, ids: Sequence[str], texts: Sequence[str], *,
                 runtime: Runtime | None = None) -> np.ndarray | None:
    """The saved catalog vectors of ``model_dir`` if they match its weights and this catalog, else None."""
    d = Path(model_dir)
    if not (d / META_FILE).is_file() or not (d / VECTORS_FILE).is_file():
        return None
    try:
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        if (meta.get("count") != len(ids) or meta.get("weights") != weights_digest(d) or meta.get("precision") != encode_precision(runtime)
                or meta.get("catalog") != catalog_digest(ids, texts)):
            return None
        vectors = np.load(d / VECTORS_FILE, allow_pickle=False)
    except (OSError, ValueError, json.JSONDecodeError) as e:
        log.info("not reusing the catalog vectors of %s: %s", d, e)
        return None
    if vectors.shape != (len(ids), meta.get("dim")):
        return None
    log.info("reusing the catalog vectors saved with %s", d)
    return vectors.astype(np.float32, copy=False)
