"""Student inference backends: same search results on torch, ONNX Runtime and OpenVINO; export reuse; fall-back."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from reldistill.errors import UserError
from reldistill.recipe import load_recipe
from reldistill.settings import Runtime
from reldistill.student import backend as rt
from reldistill.student import encode as enc
from reldistill.student.encode import encode_documents, encode_queries, load_student
from reldistill.student.runtime_choice import BATCH
from tests.student_testkit import block_runtime, judged_slice

RUNTIMES = [b for b in ("onnx", "openvino") if rt.runtime_installed(b)]


@pytest.mark.slow
@pytest.mark.skipif(not RUNTIMES, reason="neither onnxruntime nor openvino is installed (pip install 'reldistill[onnx]')")
@pytest.mark.parametrize("backend", RUNTIMES)
def test_search_results_equal_across_backends(tiny, fp32, esci_dir, backend):
    from reldistill.config import DataConfig
    from reldistill.data import load_esci
    from reldistill.index.catalog import Catalog
    from reldistill.index.dense import DenseIndex
    from reldistill.index.lexical import BM25Index
    from reldistill.retrieval.pipeline import SearchPipeline

    data = load_esci(DataConfig(path=str(esci_dir)))
    products = data.products.head(400)
    ids, texts = products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist()
    queries = list(dict.fromkeys(data.split("test")["query"]))[:12]
    ref_model = load_student(str(tiny), backend="torch", runtime=fp32)
    assert ref_model.reldistill_backend == "torch"
    model = load_student(str(tiny), backend=backend, runtime=fp32)
    assert model.reldistill_backend == backend
    ref_docs, docs = encode_documents(ref_model, texts), encode_documents(model, texts)
    assert np.abs(ref_docs - docs).max() < 1e-4  # fp32 tolerance
    assert np.abs(encode_queries(ref_model, queries) - encode_queries(model, queries)).max() < 1e-4
    dense = DenseIndex.build(ref_docs, ids)
    bm25, catalog = BM25Index.build(ids, texts), Catalog.from_data(products, data.examples)
    ref_pipe = SearchPipeline(dense, bm25, catalog, ref_model)
    pipe = SearchPipeline(dense, bm25, catalog, model)  # the runtime the student was loaded with
    for mode in ("dense", "hybrid"):
        for q in queries:
            a, b = ref_pipe.search(q, mode=mode, k=10).results, pipe.search(q, mode=mode, k=10).results
            sa, sb = np.array([h.score for h in a]), np.array([h.score for h in b])
            assert np.abs(sa - sb).max() < 1e-4
            # ids agree wherever neighbouring scores are not tied within the tolerance
            for i, (ha, hb) in enumerate(zip(a, b)):
                if ha.product_id != hb.product_id:
                    assert abs(sa[i] - sb[i]) < 1e-4 and any(abs(sa[i] - s) < 2e-4 for j, s in enumerate(sa) if j != i)


@pytest.mark.slow
@pytest.mark.skipif("onnx" not in RUNTIMES, reason="onnxruntime is not installed")
def test_export_is_written_once_beside_the_student_and_reused(tiny, fp32):
    from reldistill.student.identity import weights_digest

    load_student(str(tiny), backend="onnx", runtime=fp32)
    d = rt.exports_dir(tiny, weights_digest(tiny))
    assert d.parent == tiny.parent / f"{tiny.name}.exports"
    onnx = d / rt.ONNX_FILE
    stamp = onnx.stat().st_mtime_ns
    assert rt.read_meta(d)["weights"] == weights_digest(tiny)
    load_student(str(tiny), backend="onnx", runtime=fp32)
    assert onnx.stat().st_mtime_ns == stamp  # reused, not exported again


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_missing_runtime_falls_back_to_torch(tiny, fp32, monkeypatch, caplog, backend):
    block_runtime(monkeypatch, backend)
    assert backend not in rt.installed_backends()
    with caplog.at_level(logging.WARNING, logger=rt.log.name):
        model = load_student(str(tiny), backend=backend, runtime=fp32)
    assert model.reldistill_backend == "torch"
    assert "not installed" in caplog.text
    ref = encode_documents(load_student(str(tiny), backend="torch", runtime=fp32), ["red running shoes"])
    assert np.allclose(encode_documents(model, ["red running shoes"]), ref, atol=1e-6)


def test_auto_measures_once_and_caches_the_choice(tiny, fp32, monkeypatch):
    calls = []
    real = enc.time_backend

    def counting(model, repeats=15):
        calls.append(model.reldistill_backend)
        return real(model, repeats=3)

    monkeypatch.setattr(enc, "time_backend", counting)
    first = load_student(str(tiny), backend="auto", runtime=fp32).reldistill_backend
    assert sorted(calls) == sorted(rt.installed_backends())
    assert first in rt.installed_backends()
    n = len(calls)
    assert load_student(str(tiny), backend="auto", runtime=fp32).reldistill_backend == first
    assert len(calls) == n  # the decision came from the cache
    table = (fp32.cache_dir / BATCH.table).read_text()
    assert rt.cpu_signature().split(" [")[0] in table


def test_choose_fastest_prefers_higher_throughput():
    t = {"torch": {"query_p50_ms": 10.0, "docs_per_s": 100.0},
         "onnx": {"query_p50_ms": 2.0, "docs_per_s": 150.0},
         "openvino": {"query_p50_ms": 1.0, "docs_per_s": 90.0}}
    assert enc.choose_fastest(t) == "onnx"  # one-query latency is the query encoder's choice, not the batch backend's
    assert enc.choose_fastest({"torch": t["torch"]}) == "torch"
    assert enc.choose_fastest({"torch": t["torch"], "onnx": {**t["onnx"], "docs_per_s": 100.0}}) == "torch"  # a tie
    # a near tie (timing noise) keeps PyTorch, so two runs on one CPU serve the same way; a clear win does not
    assert enc.choose_fastest({"torch": t["torch"], "onnx": {**t["onnx"], "docs_per_s": 109.0}}) == "torch"
    assert enc.choose_fastest({"torch": t["torch"], "onnx": {**t["onnx"], "docs_per_s": 111.0}}) == "onnx"
    assert enc.choose_fastest({"torch": t["torch"], "onnx": {**t["onnx"], "docs_per_s": 105.0},
                               "openvino": {**t["openvino"], "docs_per_s": 120.0}}) == "openvino"


def test_bad_backend_setting_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="RELDISTILL_STUDENT_BACKEND must be one of auto, torch, onnx, openvino"):
        Runtime.from_env({"RELDISTILL_STUDENT_BACKEND": "tensorrt"})
    bad = tmp_path / "recipe.yaml"
    bad.write_text("student:\n  backnd: onnx\n", encoding="utf-8")
    with pytest.raises(UserError, match="student has unknown key.*backnd"):
        load_recipe(bad)
    # the one-query runtime: the same words
    with pytest.raises(UserError, match="RELDISTILL_STUDENT_QUERY_BACKEND must be one of auto, torch, onnx, openvino"):
        Runtime.from_env({"RELDISTILL_STUDENT_QUERY_BACKEND": "tensorrt"})
    bad.write_text("student:\n  query_backend: cuda\n", encoding="utf-8")
    with pytest.raises(UserError, match="student.query_backend must be one of"):
        load_recipe(bad)


@pytest.mark.skipif("onnx" not in RUNTIMES, reason="onnxruntime is not installed")
def test_int8_used_only_where_the_recorded_dev_gate_passed(tiny, fp32, monkeypatch):
    from reldistill.student.identity import weights_digest

    fp32 = dataclasses.replace(fp32, student_int8="auto")
    digest = weights_digest(tiny)
    assert load_student(str(tiny), backend="onnx", runtime=fp32).reldistill_backend == "onnx"  # no verdict yet: fp32
    rt.record_int8_verdict(tiny, digest, fp32_ndcg=0.40, int8_ndcg=0.39, catalog="c", runtime=fp32)  # lost 0.01: refused
    assert rt.int8_verdict(tiny, digest, runtime=fp32)["kept"] is False
    assert load_student(str(tiny), backend="onnx", runtime=fp32).reldistill_backend == "onnx"
    rt.record_int8_verdict(tiny, digest, fp32_ndcg=0.40, int8_ndcg=0.398, catalog="c", runtime=fp32)  # lost 0.002: kept
    quant = load_student(str(tiny), backend="onnx", runtime=fp32)
    assert quant.reldistill_backend == "onnx-int8"
    texts = ["red running shoes for women", "stainless steel water bottle 1 l", "usb c charger 65 w"]
    ref = encode_documents(load_student(str(tiny), backend="torch", runtime=fp32), texts)
    cos = np.sum(ref * encode_documents(quant, texts), axis=1)
    assert cos.min() > 0.95 and np.abs(ref - encode_documents(quant, texts)).max() > 1e-6  # int8 moved, slightly
    fp32 = dataclasses.replace(fp32, student_int8="off")
    assert load_student(str(tiny), backend="onnx", runtime=fp32).reldistill_backend == "onnx"


@pytest.mark.slow
@pytest.mark.skipif("onnx" not in RUNTIMES, reason="onnxruntime is not installed")
def test_index_build_measures_the_int8_gate_and_records_it(tmp_path, fp32, monkeypatch, esci_dir):
    from reldistill.artifacts import read_manifest
    from reldistill.config import DataConfig
    from reldistill.retrieval.build import build_index
    from tests.builders.tiny_student import build_tiny_student

    fp32 = dataclasses.replace(fp32, student_backend="onnx", student_int8="auto")
    student = build_tiny_student(tmp_path / "student", normalize=True, seed=0)  # some random students rank nothing on dev
    ex, products = judged_slice(esci_dir, 150)
    out = build_index(tmp_path / "run", student_path=str(student), data_cfg=DataConfig(path=str(esci_dir)),
                      products=products, examples=ex, runtime=fp32)
    m = read_manifest(out)
    v = m["student_int8"]
    assert v["dev_ndcg10_fp32"] > 0 and v["drop"] == pytest.approx(v["dev_ndcg10_fp32"] - v["dev_ndcg10_int8"])
    assert v["kept"] == (v["drop"] < rt.INT8_MAX_DROP)
    assert m["student_backend"] == ("onnx-int8" if v["kept"] else "onnx")


@pytest.mark.slow
@pytest.mark.skipif("onnx" not in RUNTIMES, reason="onnxruntime is not installed")
def test_index_build_gates_int8_queries_against_the_indexed_catalog(tmp_path, fp32, monkeypatch, esci_dir):
    """The query-only int8 gate: measured at index build on the torch batch backend (its catalog vectors stay torch ones), recorded
    beside the export and in the manifest once per weights + catalog, refused at a drop ≥ INT8_MAX_DROP."""
    from reldistill.artifacts import read_manifest
    from reldistill.config import DataConfig
    from reldistill.student import dev_eval
    from reldistill.retrieval.build import build_index
    from reldistill.student.identity import weights_digest
    from tests.builders.tiny_student import build_tiny_student

    runtime = dataclasses.replace(fp32, student_backend="torch", student_int8="auto")
    student = build_tiny_student(tmp_path / "student", normalize=True)
    digest = weights_digest(student)
    ex, products = judged_slice(esci_dir, 150)
    real, seen, lost = dev_eval.evaluate_student, [], {}

    def measured(model, *args, query_encoder=None, **kwargs):  # the real figures, int8's lowered by lost["by"]
        res = real(model, *args, query_encoder=query_encoder, **kwargs)
        seen.append(query_encoder.runtime)
        if query_encoder.runtime == "onnx" and "by" in lost:
            lost["fp32"] = res["ndcg@10"]
        if query_encoder.runtime == "onnx-int8" and "by" in lost:
            res = {**res, "ndcg@10": lost["fp32"] - lost["by"]}
        return res

    monkeypatch.setattr(dev_eval, "evaluate_student", measured)

    def build(prods, name):
        out = build_index(tmp_path / name, student_path=str(student), data_cfg=DataConfig(path=str(esci_dir)),
                          products=prods, examples=ex, runtime=runtime)
        return read_manifest(out)

    m = build(products, "run")
    v = m["student_query_int8"]
    assert m["student_backend"] == "torch" and m["student_int8"] is None  # the catalog stays fp32 torch vectors
    assert seen == ["onnx", "onnx-int8"] and v["catalog_backend"] == "torch" and v["dev_queries"] > 0
    assert v["dev_ndcg10_fp32"] > 0 and v["drop"] == pytest.approx(v["dev_ndcg10_fp32"] - v["dev_ndcg10_int8"])
    assert v["kept"] == (v["drop"] < rt.INT8_MAX_DROP) and v["max_drop"] == rt.INT8_MAX_DROP
    assert rt.query_int8_verdict(student, digest) == v and rt.int8_verdict(student, digest) is None
    assert build(products, "run2")["student_query_int8"] == v and len(seen) == 2  # same weights + catalog: not measured again
    lost["by"] = 1.2 * rt.INT8_MAX_DROP
    v = build(products.iloc[1:], "run3")["student_query_int8"]  # another catalog: measured again
    assert len(seen) == 4 and v["drop"] == pytest.approx(1.2 * rt.INT8_MAX_DROP) and v["kept"] is False
    lost["by"] = 0.8 * rt.INT8_MAX_DROP
    v = build(products.iloc[2:], "run4")["student_query_int8"]
    assert len(seen) == 6 and v["kept"] is True and rt.query_int8_verdict(student, digest)["kept"] is True
    runtime = dataclasses.replace(runtime, student_int8="off")
    assert build(products.iloc[3:], "run5")["student_query_int8"] is None and len(seen) == 6
