"""`index build`: encode the catalog with a student, then write FAISS + BM25 + products + manifest to <run>/index/.

The whole index directory is assembled under a temporary name and renamed into place at the end,
so a crash (even kill -9) leaves the previous index loadable. Product embeddings are checkpointed
in shards under ``<run>/.index-cache/`` so a rerun after a crash only encodes what is left.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.artifacts import MANIFEST, atomic_path, check_replaceable, data_fingerprint, read_manifest, write_manifest
from reldistill.config import DataConfig, to_dict
from reldistill.errors import UserError
from reldistill.models import resolve_model
from reldistill.progress import progress_bar
from reldistill.recipe.retrieval import IndexConfig
from reldistill.index.catalog import Catalog
from reldistill.index.dense import DenseIndex
from reldistill.index.lexical import BM25Index
from reldistill.run_layout import RunDir, index_dir_of, run_relative
from reldistill.settings import Runtime
from reldistill.student.catalog_vectors import cache_key, catalog_digest, load_vectors
from reldistill.student.encode import check_student_folder
from reldistill.student.identity import model_identity

log = logging.getLogger(__name__)

INDEX_KIND = "index"
SHARD = 2048
SORT_CHUNK = 512  # texts per encode call (length-sorted batches inside it)


def default_student(run_dir: Path) -> str:
    student = RunDir(run_dir, check=False).student
    if (student / MANIFEST).is_file() or (student / "config.json").is_file():
        return str(student)
    raise UserError(f"{run_dir} has no finished student/ — distil one first or pass --student (e.g. minilm-l6).")


def encode_catalog(model, ids: list[str], texts: list[str], cache: Path | None = None,
                   batch_size: int = 64) -> np.ndarray:
    """Document embeddings of ``texts``; with ``cache`` each shard of 2,048 is saved and reused on rerun."""
    from reldistill.student import encode_documents

    shards = []
    done = 0
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        while (cache / f"shard-{len(shards):05d}.npy").is_file() and done < len(texts):
            arr = np.load(cache / f"shard-{len(shards):05d}.npy", allow_pickle=False)
            shards.append(arr)
            done += len(arr)
    with progress_bar(len(texts), "encode products", "docs", initial=done) as advance:
        for start in range(done, len(texts), SHARD):
            chunk = texts[start:start + SHARD]
            parts = []
            for b in range(0, len(chunk), SORT_CHUNK):  # sentence-transformers sorts each call by length
                parts.append(encode_documents(model, chunk[b:b + SORT_CHUNK], batch_size=batch_size))
                advance(len(chunk[b:b + SORT_CHUNK]))
            arr = np.concatenate(parts)
            if cache is not None:
                with atomic_path(cache / f"shard-{len(shards):05d}.npy") as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, arr, allow_pickle=False)
            shards.append(arr)
    return np.concatenate(shards) if shards else np.zeros((0, model.get_embedding_dimension()), np.float32)


def build_index(run_dir_or_index_dir: str | Path, student_path: str | None = None, data_cfg: DataConfig | None = None,
                kind: str = "flat", config: IndexConfig | None = None, products: pd.DataFrame | None = None,
                examples: pd.DataFrame | None = None, force: bool = False, *, runtime: Runtime | None = None) -> Path:
    """Encode the catalog with the student and write ``<run>/index/`` atomically; returns the index directory.

    ``products``/``examples`` override the catalog and judged pairs loaded from ``data_cfg`` (tests, subsets).
    An existing index directory that is not an index is refused unless ``force``. ``runtime``: the student's
    backend, int8 and precision settings (default the library's).
    """
    from reldistill.data import load_esci
    from reldistill.student import load_student

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


def int8_gate(student_path: str, model, emb: np.ndarray, products: pd.DataFrame, examples: pd.DataFrame,
              data_cfg: DataConfig, batch_size: int = 64, runtime: Runtime | None = None):
    """With ``student.int8: auto``, measure dev nDCG@10 of the int8 ONNX export against fp32 once per student
    (recorded beside the export); returns (model, catalog vectors, verdict) — int8 ones only when it held."""
    from reldistill.student.dev_eval import evaluate_student
    from reldistill.student import backend as rt
    from reldistill.student import load_student
    from reldistill.student.identity import weights_digest

    runtime = runtime or Runtime()
    folder = Path(resolve_model(student_path, runtime).path)
    digest = weights_digest(folder)
    if runtime.student_int8 != "auto" or digest is None:
        return model, emb, None
    ids, texts = products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist()
    verdict = rt.int8_verdict(folder, digest, runtime=runtime)
    if verdict is None or verdict.get("catalog") != catalog_digest(ids, texts):
        ex = dev_examples(examples, data_cfg)
        if ex is None:
            return model, emb, None
        if model.reldistill_backend != "onnx":  # an int8 model from an earlier verdict: measure against fp32 again
            model = load_student(student_path, backend="onnx", int8=False, runtime=runtime)
            emb = encode_catalog(model, ids, texts, batch_size=batch_size)
        quant = load_student(student_path, backend="onnx", int8=True, runtime=runtime)
        quant_emb = encode_catalog(quant, ids, texts, batch_size=batch_size)
        fp32 = evaluate_student(model, ex, products, "dev", doc_embeddings=emb)["ndcg@10"]
        q8 = evaluate_student(quant, ex, products, "dev", doc_embeddings=quant_emb)["ndcg@10"]
        verdict = rt.record_int8_verdict(folder, digest, fp32, q8, catalog_digest(ids, texts), runtime=runtime)
        log.info("int8 student export: dev nDCG@10 %.4f vs fp32 %.4f → %s", q8, fp32, "kept" if verdict["kept"] else "not used")
        if verdict["kept"]:
            return quant, quant_emb, verdict
    return model, emb, verdict


def dev_examples(examples: pd.DataFrame, data_cfg: DataConfig) -> pd.DataFrame | None:
    """``examples`` with a dev split (their own, else carved from train as distillation carves it); None if none."""
    from reldistill.data.split import carve_dev

    ex = examples.copy()
    if "split" not in ex.columns or not (ex["split"] == "dev").any():
        ex["split"] = carve_dev(ex, data_cfg.dev_fraction, data_cfg.seed)
    return ex if (ex["split"] == "dev").any() else None


def query_int8_gate(student_path: str, model, emb: np.ndarray, products: pd.DataFrame, examples: pd.DataFrame,
                    data_cfg: DataConfig, runtime: Runtime | None = None) -> dict | None:
    """With ``student.int8: auto``: dev nDCG@10 of the dev queries encoded by the int8 ONNX query encoder vs the fp32
    one, both searched against ``emb`` (the catalog vectors this index holds, which stay as they are).

    Measured once per student weights and catalog, recorded beside the export (``query_int8``); the query
    encoder may run int8 (its auto still times it) only where it lost < ``INT8_MAX_DROP``. None where it does
    not apply: int8 off, no ONNX Runtime, a student without a weights digest or the lean query path, a
    student already running int8 (its own gate covered queries), or no dev queries.
    """
    from reldistill.student.dev_eval import evaluate_student
    from reldistill.student import backend as rt
    from reldistill.student.identity import weights_digest
    from reldistill.student.query_encoder import QueryEncoder, lean_plan

    runtime = runtime or Runtime()
    folder = Path(resolve_model(student_path, runtime).path)
    digest = weights_digest(folder) if folder.is_dir() else None
    if (runtime.student_int8 != "auto" or digest is None or not rt.runtime_installed("onnx") or lean_plan(model) is None
            or model.reldistill_backend.endswith("-int8")):
        return None
    catalog = catalog_digest(products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist())
    verdict = rt.query_int8_verdict(folder, digest, runtime)
    if verdict is not None and (verdict.get("catalog"), verdict.get("catalog_backend")) == (catalog, model.reldistill_backend):
        return verdict
    ex = dev_examples(examples, data_cfg)
    if ex is None:
        return None
    try:
        fp32 = QueryEncoder(model, "onnx", rt.ensure_export(model, folder, digest, runtime=runtime))
        quant = QueryEncoder(model, "onnx-int8", rt.ensure_export(model, folder, digest, int8=True, runtime=runtime))
        a, b = (evaluate_student(model, ex, products, "dev", doc_embeddings=emb, query_encoder=e) for e in (fp32, quant))
    except Exception as e:  # noqa: BLE001 - a failed export or session costs the int8 speed-up, never the index
        log.warning("query int8 gate not measured (%s: %s); queries stay fp32", type(e).__name__, e)
        return None
    a, b, n = a["ndcg@10"], b["ndcg@10"], a["queries"]
    verdict = rt.record_int8_verdict(folder, digest, a, b, catalog, key="query_int8", runtime=runtime,
                                     catalog_backend=model.reldistill_backend, dev_queries=n)
    log.info("int8 queries: dev nDCG@10 %.4f vs fp32 %.4f (catalog vectors: %s) → %s", b, a, model.reldistill_backend,
             "kept" if verdict["kept"] else "not used")
    return verdict


def _remove_stale_temps(index_dir: Path) -> None:
    """Drop temp dirs a killed build left beside ``index/`` (one build per run directory at a time)."""
    if index_dir.parent.is_dir():
        for p in index_dir.parent.glob(f".{index_dir.name}.*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def read_index_manifest(index_dir: Path) -> dict:
    return read_manifest(index_dir, INDEX_KIND)
