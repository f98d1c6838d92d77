"""The one-query encoder: same vectors and search results on every runtime, fall-back, cached choice, coverage."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from reldistill.student import backend as rt
from reldistill.student import query_encoder as qe
from reldistill.student.encode import encode_queries, load_student
from reldistill.student.runtime_choice import QUERY
from tests.student_testkit import block_runtime, judged_slice

RUNTIMES = ["torch", *(b for b in ("onnx", "openvino") if rt.runtime_installed(b))]
QUERIES = ["red running shoes", "usb c cable 6 ft", "Émile's 2-pack USB-C → HDMI 4K@60Hz", "kids water bottle",
           " ".join(["very long query"] * 40)]  # past max_seq_length: truncation must match


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("prompt", [None, "query: "])
def test_query_vectors_equal_the_plain_path_on_every_runtime(tiny, fp32, runtime, prompt):
    model = load_student(str(tiny), backend="torch", runtime=fp32)
    if prompt:
        model.prompts = {"query": prompt, "document": ""}
    enc = qe.query_encoder(model, runtime, runtime=fp32)
    assert enc.runtime == runtime and enc._tokenizer is not None  # the direct tokenizer matched ST's on the probes
    for q in QUERIES:
        assert all(np.array_equal(a, b) for a, b in zip(enc.features(q).values(), enc._st_features(q).values()))
    ref = encode_queries(model, QUERIES)
    got = enc.encode(QUERIES)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(enc.encode([QUERIES[0]])[0], got[0])  # alone or in a list: the same vector


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES[1:])
def test_search_serve_and_eval_get_the_same_results_on_each_query_runtime(tiny, fp32, esci_dir, runtime, monkeypatch):
    from reldistill.config import DataConfig
    from reldistill.data import load_esci
    from reldistill.retrieval.pipeline import SearchPipeline

    data = load_esci(DataConfig(path=str(esci_dir)))
    products = data.products.head(400)
    queries = list(dict.fromkeys(data.examples["query"]))[:15]
    base = SearchPipeline.from_data(products, data.examples, str(tiny),
                                    runtime=dataclasses.replace(fp32, student_query_backend="torch"))
    model = load_student(str(tiny), backend="torch", runtime=dataclasses.replace(fp32, student_query_backend=runtime))
    other = base.with_student(model)
    assert base.query_encoder.runtime == "torch" and other.query_encoder.runtime == runtime
    many = other.search_many(queries, mode="hybrid", k=10)  # eval's path
    for q, ranked in zip(queries, many):
        a = base.search(q, mode="dense", k=10).results
        b = other.search(q, mode="dense", k=10).results
        assert [h.product_id for h in a] == [h.product_id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=2e-5)
        assert [p for p, _ in ranked] == [h.product_id for h in other.search(q, mode="hybrid", k=10).results]


@pytest.mark.slow
@pytest.mark.parametrize("blocked_runtime", RUNTIMES[1:])
def test_missing_runtime_falls_back_to_the_torch_query_path(tiny, fp32, monkeypatch, caplog, blocked_runtime):
    block_runtime(monkeypatch, blocked_runtime)
    model = load_student(str(tiny), backend="torch", runtime=fp32)
    with caplog.at_level(logging.WARNING, logger=qe.log.name):
        enc = qe.query_encoder(model, blocked_runtime, runtime=fp32)
    assert enc.runtime == "torch" and "not installed" in caplog.text
    np.testing.assert_allclose(enc.encode(QUERIES[:2]), encode_queries(model, QUERIES[:2]), atol=2e-5)
    auto = dataclasses.replace(fp32, student_query_backend="auto")  # auto measures only what is installed
    assert blocked_runtime not in rt.installed_backends()
    assert qe.query_encoder(load_student(str(tiny), backend="torch", runtime=auto)).runtime in rt.installed_backends()


def fake_p50(monkeypatch, fake: dict[str, float]) -> list[str]:
    """Single-query timings replaced by ``fake`` (ms per runtime); returns the list of runtimes timed, as they are."""
    calls = []

    def timed(encoder, rounds=10):
        calls.append(encoder.runtime)
        return fake[encoder.runtime]

    monkeypatch.setattr(qe, "query_p50_ms", timed)
    return calls


def test_auto_picks_the_lowest_single_query_latency_once_and_caches_it(tiny, fp32, monkeypatch):
    fake = {"torch": 9.0, "onnx": 2.0, "openvino": 3.0}
    calls = fake_p50(monkeypatch, fake)
    auto = dataclasses.replace(fp32, student_query_backend="auto")
    enc = qe.query_encoder(load_student(str(tiny), backend="torch", runtime=auto))
    installed = rt.installed_backends()
    assert sorted(calls) == sorted(installed)
    assert enc.runtime == min(installed, key=fake.get)
    again = qe.query_encoder(load_student(str(tiny), backend="torch", runtime=auto))
    assert again.runtime == enc.runtime and len(calls) == len(installed)  # read from the cache
    assert rt.cpu_signature().split(" [")[0] in (fp32.cache_dir / QUERY.table).read_text()


def test_a_student_the_lean_path_does_not_cover_keeps_the_plain_encode(tiny, fp32):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    model = load_student(str(tiny), backend="torch", runtime=fp32)
    with_dense = SentenceTransformer(modules=[model[0], model[1], Dense(model[1].get_embedding_dimension(), 8)],
                                     device="cpu")
    enc = qe.query_encoder(with_dense, "onnx", runtime=fp32)
    assert enc.runtime == "plain"
    np.testing.assert_allclose(enc.encode(QUERIES[:2]), encode_queries(with_dense, QUERIES[:2]), atol=1e-6)



@pytest.mark.slow
@pytest.mark.skipif("onnx" not in RUNTIMES, reason="onnxruntime is not installed")
def test_int8_is_a_query_candidate_only_under_a_kept_gate_with_its_own_cache_key(tiny, fp32, monkeypatch):
    from reldistill.student.identity import weights_digest

    fake = {"torch": 9.0, "onnx": 2.0, "openvino": 3.0, "onnx-int8": 1.0}
    calls = fake_p50(monkeypatch, fake)
    settings = {"now": dataclasses.replace(fp32, student_query_backend="auto", student_int8="auto")}
    digest, installed = weights_digest(tiny), rt.installed_backends()
    fp32_choice = min(installed, key=fake.get)

    def enc(**changes):
        runtime = dataclasses.replace(settings["now"], **changes)
        return qe.query_encoder(load_student(str(tiny), backend="torch", runtime=runtime))

    def candidates():
        return qe.query_candidates(tiny, digest, settings["now"])

    assert candidates() == installed and enc().runtime == fp32_choice  # no verdict yet
    rt.record_int8_verdict(tiny, digest, 0.40, 0.39, "c", key="query_int8")  # lost 0.01: refused
    assert candidates() == installed
    e = enc()
    assert e.runtime == fp32_choice and e.int8_gate is None and len(calls) == len(installed)  # the same cached choice
    verdict = rt.record_int8_verdict(tiny, digest, 0.40, 0.398, "c", key="query_int8")  # lost 0.002: kept
    assert candidates() == [*installed, "onnx-int8"]
    e = enc()
    assert e.runtime == "onnx-int8" and e.int8_gate == verdict
    assert sorted(calls[len(installed):]) == sorted([*installed, "onnx-int8"])  # a new key: measured again
    assert len(json.loads((fp32.cache_dir / QUERY.table).read_text())) == 2
    ref = qe.query_encoder(load_student(str(tiny), backend="torch", runtime=fp32), "onnx", runtime=fp32).encode(QUERIES)
    got = e.encode(QUERIES)
    cos = np.sum(ref * got, axis=1)
    assert cos.min() > 0.95 and np.abs(ref - got).max() > 1e-6  # int8 moved the vectors, slightly
    assert enc(student_query_backend="onnx").runtime == "onnx"  # an explicit setting wins
    n = len(calls)  # int8 off: not a candidate, the fp32 choice comes from the cache
    assert enc(student_int8="off").runtime == fp32_choice and len(calls) == n
    real_cpu = rt.cpu_signature
    monkeypatch.setattr(rt, "cpu_signature", lambda: "another CPU [avx2] x2")  # int8 kernels differ by ISA
    assert rt.query_int8_verdict(tiny, digest) is None and "onnx-int8" not in candidates()
    monkeypatch.setattr(rt, "cpu_signature", real_cpu)
    assert rt.query_int8_verdict(tiny, digest) == verdict
    block_runtime(monkeypatch, "onnx")  # no ONNX Runtime: no int8 candidate, no failure
    assert "onnx-int8" not in candidates()
    assert enc().runtime in rt.installed_backends()


@pytest.mark.slow
@pytest.mark.skipif("onnx" not in RUNTIMES, reason="onnxruntime is not installed")
def test_kept_query_int8_gate_runs_search_serve_and_eval_on_the_same_int8_vectors(tmp_path, fp32, esci_dir, monkeypatch):
    from fastapi.testclient import TestClient

    from reldistill.artifacts import read_manifest
    from reldistill.config import DataConfig
    from reldistill.bench.search import query_encoding
    from reldistill.retrieval.build import build_index
    from reldistill.retrieval.pipeline import SearchPipeline
    from reldistill.retrieval.service import create_app
    from tests.builders.tiny_student import build_tiny_student

    fp32 = dataclasses.replace(fp32, student_backend="torch", student_int8="auto", student_query_backend="auto")
    monkeypatch.setattr(rt, "INT8_MAX_DROP", 1.0)  # admit the tiny random student's int8 queries, whatever they lost
    fake_p50(monkeypatch, {"torch": 5.0, "onnx": 5.0, "openvino": 5.0, "onnx-int8": 1.0})
    student = build_tiny_student(tmp_path / "student", normalize=True)
    ex, products = judged_slice(esci_dir, 120)
    index = build_index(tmp_path / "run", student_path=str(student), data_cfg=DataConfig(path=str(esci_dir)),
                        products=products, examples=ex, runtime=fp32)
    verdict = read_manifest(index)["student_query_int8"]
    assert verdict["kept"] and verdict["max_drop"] == 1.0
    pipe = SearchPipeline.from_run(tmp_path / "run", runtime=fp32)
    enc = pipe.query_encoder
    assert enc.runtime == "onnx-int8" and enc.int8_gate == verdict
    queries = list(dict.fromkeys(ex["query"]))[:8]
    vecs = enc.encode(queries)
    assert np.abs(qe.query_encoder(pipe.student, "onnx", runtime=fp32).encode(queries) - vecs).max() > 1e-6  # int8, not the fp32 session
    many = pipe.search_many(queries, mode="dense", k=10)  # eval's path
    client = TestClient(create_app(pipe), base_url="http://127.0.0.1")  # serve's path
    for i, q in enumerate(queries):
        ids, scores = pipe.dense.search(vecs[i:i + 1], 10)
        hits = pipe.search(q, mode="dense", k=10).results
        served = client.get("/search", params={"q": q, "k": 10, "mode": "dense"}).json()["results"]
        assert [h.product_id for h in hits] == list(ids[0]) == [p for p, _ in many[i]] == [h["product_id"] for h in served]
        np.testing.assert_allclose([h.score for h in hits], scores[0], atol=1e-6)
        np.testing.assert_allclose([h["score"] for h in served], scores[0], atol=1e-6)
    res = query_encoding({"new": enc}, queries[:3])["new"]  # bench names the runtime and the gate's drop
    assert res["runtime"] == "onnx-int8" and res["int8_gate"]["drop"] == verdict["drop"] and res["n"] == 3
