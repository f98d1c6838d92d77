"""The student's int8 gates at index-build time: dev nDCG@10 of the int8 ONNX export (catalog vectors, queries)
against fp32, measured once per student weights and catalog and recorded beside the export.

``build_index`` (retrieval.build) runs them on a runtime (``reldistill.settings.Runtime``: its ``student_int8``
setting) that its caller resolved.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.config import DataConfig
from reldistill.data.split import carve_dev
from reldistill.models import resolve_model
from reldistill.student.catalog_encode import encode_catalog
from reldistill.settings import Runtime
from reldistill.student import backend as rt
from reldistill.student import dev_eval
from reldistill.student.catalog_vectors import catalog_digest
from reldistill.student.encode import load_student
from reldistill.student.identity import weights_digest
from reldistill.student.query_encoder import QueryEncoder, lean_plan

log = logging.getLogger(__name__)


def int8_gate(student_path: str, model, emb: np.ndarray, products: pd.DataFrame, examples: pd.DataFrame,
              data_cfg: DataConfig, batch_size: int = 64, runtime: Runtime | None = None):
    """With ``student.int8: auto``, measure dev nDCG@10 of the int8 ONNX export against fp32 once per student
    (recorded beside the export); returns (model, catalog vectors, verdict) — int8 ones only when it held."""
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
        fp32 = dev_eval.evaluate_student(model, ex, products, "dev", doc_embeddings=emb)["ndcg@10"]
        q8 = dev_eval.evaluate_student(quant, ex, products, "dev", doc_embeddings=quant_emb)["ndcg@10"]
        verdict = rt.record_int8_verdict(folder, digest, fp32, q8, catalog_digest(ids, texts), runtime=runtime)
        log.info("int8 student export: dev nDCG@10 %.4f vs fp32 %.4f → %s", q8, fp32, "kept" if verdict["kept"] else "not used")
        if verdict["kept"]:
            return quant, quant_emb, verdict
    return model, emb, verdict


def dev_examples(examples: pd.DataFrame, data_cfg: DataConfig) -> pd.DataFrame | None:
    """``examples`` with a dev split (their own, else carved from train as distillation carves it); None if none."""
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
        a, b = (dev_eval.evaluate_student(model, ex, products, "dev", doc_embeddings=emb, query_encoder=e) for e in (fp32, quant))
    except Exception as e:  # noqa: BLE001 - a failed export or session costs the int8 speed-up, never the index
        log.warning("query int8 gate not measured (%s: %s); queries stay fp32", type(e).__name__, e)
        return None
    a, b, n = a["ndcg@10"], b["ndcg@10"], a["queries"]
    verdict = rt.record_int8_verdict(folder, digest, a, b, catalog, key="query_int8", runtime=runtime,
                                     catalog_backend=model.reldistill_backend, dev_queries=n)
    log.info("int8 queries: dev nDCG@10 %.4f vs fp32 %.4f (catalog vectors: %s) → %s", b, a, model.reldistill_backend,
             "kept" if verdict["kept"] else "not used")
    return verdict
