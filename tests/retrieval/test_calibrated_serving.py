"""Calibrated scores where they leave the library: /rerank and /search with min_score, `search --min-score`,
the teacher's calibration fitted on dev (rerank results, `teacher score` columns), `reldistill calibrate`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from reldistill.calibration import Calibration, Calibrator, load_calibration
from reldistill.rerank import RankedResult
from reldistill.recipe.retrieval import ServeConfig
from reldistill.retrieval.pipeline import SearchPipeline
from reldistill.retrieval.service import create_app
from tests.retrieval_testkit import FakeReranker, torch_threads
from tests.conftest import TEST_RUNTIME

DOCS = ["red running shoes", "blue tea mug", "red shoes for running fast", "usb cable", "running socks red", "lamp"]


def _platt(a: float, b: float, transform: str) -> Calibration:
    return Calibration(transform, {"p_exact": Calibrator("platt", {"a": a, "b": b}),
                                   "p_exact_or_substitute": Calibrator("platt", {"a": a, "b": b + 1.0})})


class CalibratedFake(FakeReranker):
    """FakeReranker whose raw score (word overlap) maps to P(Exact) = sigmoid(2·score − 3)."""

    calibration = _platt(2.0, -3.0, "identity")

    def rerank(self, query, candidates, top_k=None):
        out = super().rerank(query, candidates, top_k)
        probs = self.calibration.probabilities([r.score for r in out])
        return [RankedResult(r.id, r.score, r.rank, r.index, float(probs["p_exact"][i]), float(probs["p_exact_or_substitute"][i]))
                for i, r in enumerate(out)]


@pytest.fixture(scope="module")
def pipe(run):
    with torch_threads(1):
        yield SearchPipeline.from_run(run[0], reranker=CalibratedFake(), runtime=TEST_RUNTIME)


def _client(pipe, reranker):
    return TestClient(create_app(pipe, ServeConfig(), reranker=reranker), base_url="http://127.0.0.1")


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
def test_rerank_min_score_drops_exactly_the_documents_below_it(pipe, path):
    client = _client(pipe, CalibratedFake())
    every = client.post(path, json={"query": "red running shoes", "documents": DOCS}).json()["results"]
    assert len(every) == len(DOCS) and all({"index", "id", "relevance_score", "document", "p_exact"} <= set(r) for r in every)
    probs = sorted(r["p_exact"] for r in every)
    cut = (probs[2] + probs[3]) / 2  # between two documents: three kept
    kept = client.post(path, json={"query": "red running shoes", "documents": DOCS, "min_score": cut}).json()["results"]
    assert [r["index"] for r in kept] == [r["index"] for r in every if r["p_exact"] >= cut]
    assert len(kept) == 3 and all(r["p_exact"] >= cut for r in kept)
    exact = client.post(path, json={"query": "red running shoes", "documents": DOCS, "min_score": probs[-1]}).json()["results"]
    assert [r["p_exact"] for r in exact] == [probs[-1]]  # a document at the threshold is kept
    assert client.post(path, json={"query": "red running shoes", "documents": DOCS, "min_score": 1.5}).status_code == 422


def test_rerank_min_score_needs_a_calibrated_reranker(pipe):
    client = _client(pipe, FakeReranker())
    plain = client.post("/rerank", json={"query": "red shoes", "documents": DOCS}).json()["results"]
    assert all(set(r) == {"index", "id", "relevance_score", "document"} for r in plain)  # Cohere's shape, nothing added
    r = client.post("/rerank", json={"query": "red shoes", "documents": DOCS, "min_score": 0.5})
    assert r.status_code == 400 and "calibrat" in r.json()["detail"]


def test_search_min_score_with_the_students_and_the_teachers_probabilities(pipe, run):
    q = run[2]["query"].iloc[0]
    client = _client(pipe, CalibratedFake())
    assert client.get("/search", params={"q": q, "min_score": 0.2}).status_code == 400  # this student has no calibration
    pipe.student_calibration = _platt(12.0, -6.0, "identity")  # cosine 0.5 → P(Exact) 0.5
    try:
        every = client.get("/search", params={"q": q, "k": 20, "mode": "hybrid"}).json()["results"]
        probs = [h["p_exact"] for h in every]
        assert all(p is not None for p in probs) and all(h["p_exact_or_substitute"] >= h["p_exact"] for h in every)
        cut = float(np.median(probs))
        kept = client.get("/search", params={"q": q, "k": 20, "mode": "hybrid", "min_score": cut}).json()["results"]
        assert [h["product_id"] for h in kept] == [h["product_id"] for h in every if h["p_exact"] >= cut]
        dense = pipe.search(q, mode="dense", k=5)
        assert [h.p_exact for h in dense.results] == sorted((h.p_exact for h in dense.results), reverse=True)
        rr = client.get("/search", params={"q": q, "k": 5, "mode": "rerank", "min_score": 0.0}).json()["results"]
        assert all(h["p_exact"] == pytest.approx(1 / (1 + np.exp(-(2 * h["score"] - 3)))) for h in rr)  # the teacher's
    finally:
        pipe.student_calibration = None


@pytest.mark.slow
def test_search_cli_min_score_names_the_fix_when_uncalibrated(run, cli):
    proc = cli("search", run[2]["query"].iloc[0], "--run", str(run[0]), "--mode", "dense", "--k", "5", "--min-score", "0.5")
    assert proc.returncode == 2 and "reldistill calibrate" in proc.stdout + proc.stderr
