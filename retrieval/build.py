"""`index build`: encode the catalog with a student, then write FAISS + BM25 + products + manifest to <run>/index/.

The whole index directory is assembled under a temporary name and renamed into place at the end,
so a crash (even kill -9) leaves the previous index loadable. Product embeddings are checkpointed
in shards under ``<run>/.index-cache/`` so a rerun after a crash only encodes what is left.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from reldistill.artifacts import MANIFEST, atomic_path, check_replaceable, data_fingerprint, read_manifest, write_manifest
from reldistill.config import DataConfig, to_dict
from reldistill.data import load_esci
from reldistill.errors import UserError
from reldistill.index.catalog import Catalog
from reldistill.index.dense import DenseIndex
from reldistill.index.lexical import BM25Index
from reldistill.recipe.retrieval import IndexConfig
from reldistill.student.catalog_encode import encode_catalog
from reldistill.retrieval.gates import int8_gate, query_int8_gate
from reldistill.run_layout import RunDir, index_dir_of, run_relative
from reldistill.settings import Runtime
from reldistill.student.catalog_vectors import cache_key, load_vectors
from reldistill.student.encode import check_student_folder, load_student
from reldistill.student.identity import model_identity

log = logging.getLogger(__name__)

INDEX_KIND = "index"


def default_student(run_dir: Path) -> str:
    student = RunDir(run_dir, check=False).student
    if (student / MANIFEST).is_file() or (student / "config.json").is_file():
        return str(student)
    raise UserError(f"{run_dir} has no finished student/ — distil one first or pass --student (e.g. minilm-l6).")


def build_index(run_dir_or_index_dir: str | Path, student_path: str | None = None, data_cfg: DataConfig | None = None,
                kind: str = "flat", config: IndexConfig | None = None, products: pd.DataFrame | None = None,
                examples: pd.DataFrame | None = None, force: bool = False, *, runtime: Runtime | None = None) -> Path:
    """Encode the catalog with the student and write ``<run>/index/`` atomically; returns the index directory.

    ``products``/``examples`` override the catalog and judged pairs loaded from ``data_cfg`` (tests, subsets).
    An existing index directory that is not an index is refused unless ``force``. ``runtime``: the student's
    backend, int8 and precision settings (default the library's).
    """
    index_dir = index_dir_of(run_dir_or_index_dir)
    run_dir = index_dir.parent
    check_replaceable(index_dir, INDEX_KIND, force)
    _remove_stale_temps(index_dir)
    cfg = config or IndexConfig(kind=kind)
    if config is not None and kind != cfg.kind:
        cfg = IndexConfig(**{**to_dict(cfg), "kind": kind})
    data_cfg = data_cfg or DataConfig()
    student_path = student_path or default_student(run_dir)
    if Path(student_path).is_dir():
        check_student_folder(Path(student_path))  # not another artifact, before anything is read
    student_id = model_identity(student_path)
    if products is None:
        data = load_esci(data_cfg)
        products, examples = data.products, data.examples if examples is None else examples
    catalog = Catalog.from_data(products, examples)  # refuses duplicate product ids
    ids = products["product_id"].astype(str).tolist()
    texts = products["text"].astype(str).tolist()
    runtime = runtime or Runtime()
    model = load_student(student_path, runtime=runtime)
    dim = int(model.get_embedding_dimension())
    backend = model.reldistill_backend
    cache = RunDir(run_dir, check=False).index_cache / cache_key(student_path, ids, texts, backend, runtime=runtime)
    reuse = Path(student_path).is_dir() and not backend.endswith("int8")  # saved vectors are fp32 ones
    emb = load_vectors(student_path, ids, texts, runtime=runtime) if reuse else None
    if emb is None:
        emb = encode_catalog(model, ids, texts, cache=cache, batch_size=cfg.batch_size)
    int8 = query_int8 = None
    if backend in ("onnx", "onnx-int8") and examples is not None:
        model, emb, int8 = int8_gate(student_path, model, emb, products, examples, data_cfg, cfg.batch_size, runtime)
    if examples is not None:
        query_int8 = query_int8_gate(student_path, model, emb, products, examples, data_cfg, runtime)
    dense = DenseIndex.build(emb, ids, kind=cfg.kind, model=student_id, config=cfg)
    bm25 = BM25Index.build(ids, texts)
    fingerprint = data_fingerprint(data_cfg.path) if Path(data_cfg.path).exists() else {}
    with atomic_path(index_dir, force=force) as tmp:
        tmp.mkdir()
        dense.save(tmp)
        bm25.save(tmp)
        catalog.save(tmp)
        write_manifest(tmp, INDEX_KIND, student=student_id, student_path=run_relative(run_dir, student_path), dim=dim, index_kind=cfg.kind, count=len(ids),
                       normalized=True, metric="inner_product", index=to_dict(cfg),
                       student_backend=model.reldistill_backend, student_int8=int8, student_query_int8=query_int8,
                       data={"path": str(data_cfg.path), "fingerprint": fingerprint})
    shutil.rmtree(cache, ignore_errors=True)
    log.info("wrote %s (%d products, dim %d, %s)", index_dir, len(ids), dim, cfg.kind)
    return index_dir


def _remove_stale_temps(index_dir: Path) -> None:
    """Drop temp dirs a killed build left beside ``index/`` (one build per run directory at a time)."""
    if index_dir.parent.is_dir():
        for p in index_dir.parent.glob(f".{index_dir.name}.*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def read_index_manifest(index_dir: Path) -> dict:
    return read_manifest(index_dir, INDEX_KIND)
