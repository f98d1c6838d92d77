"""The one-query encoder: same vectors and search results on every runtime, fall-back, cached choice, coverage."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from reldistill.student import backend as rt
from reldistill.student import encode_queries, load_student
from reldistill.student import query_encoder as qe
from test_student_backend import block_runtime, fp32, tiny  # noqa: F401 - shared fixtures and helper

RUNTIMES = ["torch", *(b for b in ("onnx", "openvino") if rt.runtime_installed(b))]
QUERIES = ["red running shoes", "usb c cable 6 ft", "Émile's 2-pack USB-C → HDMI 4K@60Hz", "kids water bottle",
           " ".join(["very long query"] * 40)]  # past max_seq_length: truncation must match


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("prompt", [None, "query: "])
def test_query_vectors_equal_the_plain_path_on_every_runtime(tiny, fp32, runtime, prompt):
    model = load_student(str(tiny), backend="torch")
    if prompt:
        model.prompts = {"query": prompt, "document": ""}
    enc = qe.query_encoder(model, runtime)
    assert enc.runtime == runtime and enc._tokenizer is not None  # the direct tokenizer matched ST's on the probes
    for q in QUERIES:
        assert all(np.array_equal(a, b) for a, b in zip(enc.features(q).values(), enc._st_features(q).values()))
    ref = encode_queries(model, QUERIES)
    got = enc.encode(QUERIES)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(enc.encode([QUERIES[0]])[0], got[0])  # alone or in a list: the same vector


@pytest.mark.parametrize("runtime", RUNTIMES[1:])
def test_search_serve_and_eval_get_the_same_results_on_each_query_runtime(tiny, fp32, esci_dir, runtime, monkeypatch):
    from reldistill.config import DataConfig
    from reldistill.data import load_esci
    from reldistill.retrieval.pipeline import SearchPipeline

    data = load_esci(DataConfig(path=str(esci_dir)))
    products = data.products.head(400)
    queries = list(dict.fromkeys(data.examples["query"]))[:15]
    monkeypatch.setenv(qe.QUERY_BACKEND_ENV, "torch")
    base = SearchPipeline.from_data(products, data.examples, str(tiny))
    monkeypatch.setenv(qe.QUERY_BACKEND_ENV, runtime)
    model = load_student(str(tiny), backend="torch")
    other = base.with_student(model)
    assert base.query_encoder.runtime == "torch" and other.query_encoder.runtime == runtime
    many = other.search_many(queries, mode="hybrid", k=10)  # eval's path
    for q, ranked in zip(queries, many):
        a = base.search(q, mode="dense", k=10).results
        b = other.search(q, mode="dense", k=10).results
        assert [h.product_id for h in a] == [h.product_id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=2e-5)
        assert [p for p, _ in ranked] == [h.product_id for h in other.search(q, mode="hybrid", k=10).results]


@pytest.mark.parametrize("blocked_runtime", RUNTIMES[1:])
def test_missing_runtime_falls_back_to_the_torch_query_path(tiny, fp32, monkeypatch, caplog, blocked_runtime):
    block_runtime(monkeypatch, blocked_runtime)
    model = load_student(str(tiny), backend="torch")
    with caplog.at_level(logging.WARNING, logger=qe.log.name):
        enc = qe.query_encoder(model, blocked_runtime)
    assert enc.runtime == "torch" and "not installed" in caplog.text
    np.testing.assert_allclose(enc.encode(QUERIES[:2]), encode_queries(model, QUERIES[:2]), atol=2e-5)
    monkeypatch.setenv(qe.QUERY_BACKEND_ENV, "auto")  # auto measures only what is installed
    assert blocked_runtime not in rt.installed_backends()
    assert qe.query_encoder(load_student(str(tiny), backend="torch")).runtime in rt.installed_backends()


def test_auto_picks_the_lowest_single_query_latency_once_and_caches_it(tiny, fp32, monkeypatch):
    fake = {"torch": 9.0, "onnx": 2.0, "openvino": 3.0}
    calls = []

    def timed(encoder, rounds=10):
        calls.append(encoder.runtime)
        return fake[encoder.runtime]

    monkeypatch.setattr(qe, "query_p50_ms", timed)
    monkeypatch.setenv(qe.QUERY_BACKEND_ENV, "auto")
    enc = qe.query_encoder(load_student(str(tiny), backend="torch"))
    installed = rt.installed_backends()
    assert sorted(calls) == sorted(installed)
    assert enc.runtime == min(installed, key=fake.get)
    again = qe.query_encoder(load_student(str(tiny), backend="torch"))
    assert again.runtime == enc.runtime and len(calls) == len(installed)  # read from the cache
    assert rt.cpu_signature().split(" [")[0] in qe._decision_file().read_text()


def test_a_student_the_lean_path_does_not_cover_keeps_the_plain_encode(tiny, fp32):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    model = load_student(str(tiny), backend="torch")
    with_dense = SentenceTransformer(modules=[model[0], model[1], Dense(model[1].get_embedding_dimension(), 8)],
                                     device="cpu")
    enc = qe.query_encoder(with_dense, "onnx")
    assert enc.runtime == "plain"
    np.testing.assert_allclose(enc.encode(QUERIES[:2]), encode_queries(with_dense, QUERIES[:2]), atol=1e-6)

