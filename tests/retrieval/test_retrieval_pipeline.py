"""SearchPipeline on a real MiniLM index over a slice of the ESCI sample (ids checked against the examples table)."""

import pandas as pd
import pytest

from reldistill.errors import UserError
from reldistill.retrieval.build import build_index
from reldistill.retrieval.pipeline import SearchPipeline
from tests.retrieval_testkit import FakeReranker, build_tiny_student, torch_threads
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def pipe(run):
    with torch_threads(1):
        yield SearchPipeline.from_run(run[0], reranker=FakeReranker(), runtime=TEST_RUNTIME)


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid", "rerank"])
def test_judged_test_query_returns_its_products(pipe, run, mode):
    _, data, tq, _ = run
    for qid, g in tq.groupby("query_id"):
        query = g["query"].iloc[0]
        judged = dict(zip(g["product_id"], g["esci_label"]))
        res = pipe.search(query, mode=mode, k=10)
        ids = [h.product_id for h in res.results]
        assert len(ids) == 10 and len(set(ids)) == 10
        hits = [p for p in ids if p in judged]
        assert len(hits) >= 5, (query, mode, ids)  # by id against the examples table, not by position
        assert res.judged
        for h in res.results:  # the label shown is the judged one for this (query, product)
            assert h.label == judged.get(h.product_id)
        assert res.timings_ms["total_ms"] > 0


def test_stage_ranks_and_timings(pipe, run):
    query = run[2]["query"].iloc[0]
    hybrid = pipe.search(query, mode="hybrid", k=5)
    assert {"bm25_ms", "encode_ms", "dense_ms", "fuse_ms", "total_ms"} <= set(hybrid.timings_ms)
    assert [h.fused_rank for h in hybrid.results] == [1, 2, 3, 4, 5]
    assert all(h.bm25_rank is not None or h.dense_rank is not None for h in hybrid.results)
    bm25 = pipe.search(query, mode="bm25", k=5)
    assert [h.product_id for h in bm25.results] == [p for p, _ in pipe.search_many([query], "bm25", 5)[0]]
    assert all(h.dense_rank is None and h.bm25_rank == h.rank for h in bm25.results)
    calls = pipe.reranker.calls
    rr = pipe.search(query, mode="rerank", k=5, rerank_k=10)
    assert pipe.reranker.calls == calls + 1 and "rerank_ms" in rr.timings_ms
    assert [h.rerank_rank for h in rr.results] == [1, 2, 3, 4, 5]
    assert all(h.fused_rank is not None and h.fused_rank <= 10 for h in rr.results)
    scores = [h.score for h in rr.results]
    assert scores == sorted(scores, reverse=True)


def test_search_many_matches_single_search(pipe, run):
    queries = list(run[2].drop_duplicates("query_id")["query"])
    many = pipe.search_many(queries, mode="hybrid", k=7)
    for q, ranked in zip(queries, many):
        assert [p for p, _ in ranked] == [h.product_id for h in pipe.search(q, mode="hybrid", k=7).results]


def test_bad_queries_and_arguments(pipe):
    with pytest.raises(UserError, match="empty"):
        pipe.search("   ")
    with pytest.raises(UserError, match="1,048,576 characters"):
        pipe.search("a" * (1 << 20))
    with pytest.raises(UserError, match="k must be between 1 and 100"):
        pipe.search("shoes", k=1000)
    with pytest.raises(UserError, match="mode must be one of"):
        pipe.search("shoes", mode="magic")


def test_add_and_remove_products_without_rebuild(run, tmp_path):
    with torch_threads(1):
        p = SearchPipeline.from_run(run[0], runtime=TEST_RUNTIME)
        new = pd.DataFrame({"product_id": ["ZNEW000001"], "product_title": ["Zorblax quantum hiking boots"],
                            "product_brand": ["Zorblax"], "text": ["Zorblax quantum hiking boots waterproof"]})
        p.add_products(new)
        for mode in ("bm25", "dense", "hybrid"):
            assert p.search("zorblax quantum boots", mode=mode, k=3).results[0].product_id == "ZNEW000001"
        assert p.catalog.get("ZNEW000001")["brand"] == "Zorblax"
        p.remove_products(["ZNEW000001"])
        for mode in ("bm25", "dense", "hybrid"):
            assert "ZNEW000001" not in [h.product_id for h in p.search("zorblax quantum boots", mode=mode, k=10).results]


def test_similar_items(pipe, run):
    pid = run[3]["product_id"].iloc[0]
    hits = pipe.similar(pid, k=5)
    assert len(hits) == 5 and pid not in [h.product_id for h in hits]
    with pytest.raises(KeyError):
        pipe.similar("NOPE", 3)


def test_index_from_another_student_refused(run, tmp_path):
    tiny = build_tiny_student(tmp_path / "tiny")
    with pytest.raises(UserError, match="built with student"):
        SearchPipeline.from_run(run[0], student=str(tiny), runtime=TEST_RUNTIME)
    from reldistill.student import load_student

    with pytest.raises(UserError, match="32"):  # a model object: checked by dimension
        SearchPipeline.from_run(run[0], student=load_student(str(tiny), runtime=TEST_RUNTIME), runtime=TEST_RUNTIME)


@pytest.mark.slow
def test_failed_build_keeps_previous_index(run, esci_dir, tmp_path, monkeypatch):
    """A build that dies while writing leaves the previous index loadable and no half-written index/."""
    import shutil

    from reldistill.config import DataConfig
    from reldistill.index import lexical

    work = tmp_path / "run"
    shutil.copytree(run[0] / "index", work / "index")
    before = SearchPipeline.from_run(work, runtime=TEST_RUNTIME).search("shoes", mode="bm25", k=5)

    def boom(self, directory):
        raise OSError("disk full")

    monkeypatch.setattr(lexical.BM25Index, "save", boom)
    with pytest.raises(OSError), torch_threads(1):
        build_index(work, "minilm-l6", DataConfig(path=str(esci_dir)), kind="hnsw",
                    products=run[3].head(20), examples=run[1].examples, runtime=TEST_RUNTIME)
    after = SearchPipeline.from_run(work, runtime=TEST_RUNTIME)
    assert after.dense.kind == "flat" and len(after.catalog) == len(run[3])
    assert [h.product_id for h in after.search("shoes", mode="bm25", k=5).results] == [h.product_id for h in before.results]
    assert not [p for p in work.iterdir() if p.name.startswith(".index.")]  # temp dir cleaned


def test_rerank_with_tiny_teacher(run, tmp_path):
    """mode=rerank loads the run's teacher (here a tiny random one) through the Reranker interface: the composition
    root (reldistill.workflow.compose) hands the pipeline its loader; a pipeline built without one has no reranker."""
    import shutil

    from reldistill.workflow.compose import run_pipeline
    from tests.builders.tiny_teacher import build_tiny_teacher

    work = tmp_path / "run"
    shutil.copytree(run[0] / "index", work / "index")
    build_tiny_teacher(work / "teacher")
    bare = SearchPipeline.from_run(work, runtime=TEST_RUNTIME)
    assert bare.teacher_dir == work / "teacher" and not bare.has_reranker and bare.stats()["reranker"] is None
    with pytest.raises(UserError, match="needs a reranker"):
        bare.search("shoes", mode="rerank", k=5)
    p = run_pipeline(work, runtime=TEST_RUNTIME)
    assert p.has_reranker and p.stats()["reranker"] == "teacher (lazy)"
    res = p.search(run[2]["query"].iloc[0], mode="rerank", k=5, rerank_k=8)
    assert [h.rerank_rank for h in res.results] == [1, 2, 3, 4, 5]
    assert all(0.0 <= h.score <= 1.0 for h in res.results)
    assert p.stats()["reranker"].startswith("teacher:")


def test_copies_share_the_loaded_reranker_and_its_loader(pipe, tmp_path):
    """with_student / with_config copies keep the loader, and load the teacher once, through their source."""
    loads = []

    def loader(teacher_dir):
        loads.append(teacher_dir)
        return FakeReranker()

    main = SearchPipeline(pipe.dense, pipe.bm25, pipe.catalog, pipe.student, teacher_dir=tmp_path, reranker_loader=loader)
    copies = [main.with_config(), main.with_student(pipe.student, name="again")]
    assert all(c.reranker_loader is loader and c.has_reranker for c in copies) and loads == []
    assert {id(c.reranker) for c in copies} == {id(main.reranker)} and loads == [tmp_path]
    assert not SearchPipeline(pipe.dense, pipe.bm25, pipe.catalog, pipe.student, reranker_loader=loader).has_reranker


def test_rerank_weight_blends_first_stage_and_teacher_orders(pipe, run):
    """search.rerank_weight: the reranked top-k is an RRF of the fused order (weight 1) and the teacher's (weight w)."""
    import dataclasses

    from reldistill.index.fusion import rrf_fuse
    from reldistill.retrieval.serving import Serving

    query = run[2]["query"].iloc[0]
    fused = [p for p, _ in pipe.search_many([query], "hybrid", k=10)[0]]
    teacher = [p for p, _ in pipe.search_many([query], "rerank", k=10, rerank_k=10)[0]]
    assert teacher != fused  # the fake teacher reorders this pool, so the blend below is a real test

    def blended(w):
        p = pipe.with_config(dataclasses.replace(pipe.config, rerank_weight=w))
        return [h.product_id for h in p.search(query, mode="rerank", k=10, rerank_k=10).results]

    assert blended(1e-6) == fused and blended(1e6) == teacher
    want = [p for p, _ in rrf_fuse({"first": fused, "teacher": teacher}, k=pipe.config.rrf_k, weights={"first": 1.0, "teacher": 0.5})]
    assert blended(0.5) == want
    s = Serving("rerank", weights={"bm25": 1.0, "dense": 2.0}, rerank_k=10, rerank_weight=0.5)
    assert s.name.endswith("+rerank@10(w=0.5)") and s.search_config(pipe.config).rerank_weight == 0.5
    assert Serving("hybrid", rerank_weight=0.5).search_config(pipe.config).rerank_weight == pipe.config.rerank_weight
    # a non-rerank serving that carries the dev-best rerank: rerank requests get it, the other modes keep their weights
    dense = Serving("dense", rerank={"rerank_k": 7, "rerank_weight": 0.25})
    cfg = dense.search_config(pipe.config)
    assert (cfg.rerank_k, cfg.rerank_weight, cfg.weights) == (7, 0.25, dense.weights)
    assert Serving("dense", rerank={"rerank_k": 7, "rerank_weight": None}).search_config(pipe.config).rerank_weight is None


def test_rerank_weight_must_be_positive():
    from reldistill.recipe.retrieval import SearchConfig

    with pytest.raises(UserError, match="rerank_weight"):
        SearchConfig(rerank_weight=0.0)
