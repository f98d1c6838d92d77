"""Eval scores exactly what is served: for every system its ranked lists equal `SearchPipeline.search`, on the
index kind the run built (HNSW here); the served configuration is chosen on dev and `search` uses it."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import assert_user_error
from reldistill.artifacts import write_manifest
from reldistill.config import DataConfig
from reldistill.recipe.eval import EvalConfig
from reldistill.recipe.retrieval import SearchConfig
from reldistill.eval.teacher_scores import cached_reranker
from reldistill.retrieval.pipeline import SearchPipeline
from reldistill.retrieval.serving import read_serving
from tests.retrieval_testkit import build_tiny_student, judged_esci, torch_threads
from tests.conftest import TEST_RUNTIME

pytestmark = pytest.mark.slow  # every test shares a fixture that builds, indexes and evaluates a tiny run


@pytest.fixture(scope="module")
def small(esci_dir, tmp_path_factory):
    """4 test + 12 train queries of the real sample (judged ≥ 10 times), their products and 200 others."""
    return judged_esci(esci_dir, tmp_path_factory.mktemp("esci-serves"), n_test=4, n_train=12, min_judged=10, n_other=200)


@pytest.fixture(scope="module")
def run(small, tmp_path_factory):
    """Tiny random teacher and students; the index is HNSW, built as `reldistill index build` does."""
    from reldistill.recipe.retrieval import IndexConfig
    from reldistill.retrieval.build import build_index
    from tests.builders.tiny_teacher import build_tiny_teacher

    root = tmp_path_factory.mktemp("run-serves")
    build_tiny_teacher(root / "teacher")
    base = build_tiny_student(root / "tiny" / "base")
    for sub in ("student", "student-human"):
        shutil.copytree(build_tiny_student(root / "tiny" / sub), root / sub)
        write_manifest(root / sub, "student", base_student=str(base))
    cfg = DataConfig(path=str(small), dev_fraction=0.5)
    with torch_threads(1):
        build_index(root, str(root / "student"), cfg, kind="hnsw", config=IndexConfig(kind="hnsw"), runtime=TEST_RUNTIME)
    write_manifest(root / "data", "data-check", data={"path": str(small)})
    return root, cfg


def base_student(root):
    return next((root / "tiny" / "base").glob("st"))


class _Recording:
    """A reranker that keeps every (query, pool, results) it is asked for; the rest is the wrapped reranker's."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def rerank(self, query, candidates, top_k=None):
        results = self.inner.rerank(query, candidates, top_k)
        self.calls.append((query, list(candidates), results))
        return results

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_eval_ranked_lists_equal_served_search(run):
    from reldistill.eval.compare import Evaluation

    root, data_cfg = run
    search_cfg = SearchConfig(depth=30, weights={"bm25": 1.0, "dense": 2.0}, rerank_k=6)
    cfg = EvalConfig(depth=20, teacher_dtype="float32", weight_grid=[0.5, 1.0], rerank_k_grid=[4], min_gain=0.0,
                     dev_rerank_queries=3)
    with torch_threads(1):
        ev = Evaluation(root, data_cfg, cfg, search_cfg, runtime=TEST_RUNTIME)
        rep = ev.run_all()
    runs = rep["_runs"]["retrieval"]
    assert rep["details"]["index"]["kind"] == "hnsw"
    assert {s["index_kind"] for s in rep["details"]["students"].values()} == {"hnsw"}
    from reldistill.teacher.rerank import TeacherReranker

    # the served reranker in the dtype eval scored with (auto is bf16 on CPUs with AVX512-BF16)
    served = SearchPipeline.from_run(root, config=search_cfg, reranker=TeacherReranker.load(root / "teacher", dtype="float32", runtime=TEST_RUNTIME), runtime=TEST_RUNTIME)
    assert served.dense.kind == "hnsw"
    others = {s: served.with_student(str(root / sub)) for s, sub in (("dense-human", "student-human"),)}
    others["dense-base"] = served.with_student(str(base_student(root)))
    qtext = dict(zip(ev.systems.inputs.query_ids, ev.systems.inputs.queries))
    # `search --mode rerank` on the run gets the serving's rerank settings (the dev-best rerank unless rerank is served)
    s = ev.serving
    as_searched = served.with_config(s.search_config(search_cfg))
    # The teacher's scores agree to fp32 rounding only: eval scores many queries' pairs per batch (a query with >= 8
    # rows gets its own KV prefix), a served rerank one query's pool, and the kernels sum in another order (~1e-6 on
    # this tiny random teacher: enough to swap two of its near-tied scores on an AVX2 CPU, and on an AVX-512 one with
    # prefix sharing). So: (1) the teacher as served scores every pool eval reranked within rounding of eval's
    # scores (another artifact or dtype would not: bf16 alone moves them ~1e-3); (2) on eval's teacher scores, every
    # list `search` gives equals eval's exactly.
    cache, known, reranked = ev.systems.teacher_cache, len(ev.systems.teacher_cache.known), _Recording(served.reranker)
    recorded = as_searched.with_config(reranker=reranked)
    with torch_threads(1):
        for q in qtext.values():
            recorded.search(q, mode="rerank", k=10)
    for q, pool, results in reranked.calls:  # each pool exactly as `search --mode rerank` handed it to the teacher
        in_eval = dict(zip([p for p, _ in pool], cache.scores([q] * len(pool), [t for _, t in pool])))
        assert len(pool) >= 4 and {r.id: r.score for r in results} == pytest.approx(in_eval, abs=1e-4), q
    assert len(reranked.calls) == len(qtext) and len(cache.known) == known  # each pool is one eval scored (no pair new to it)
    as_searched = as_searched.with_config(reranker=cached_reranker(cache))
    cases = [("bm25", served, "bm25", 20), ("dense-distilled", served, "dense", 20), ("hybrid-distilled", served, "hybrid", 20),
             ("hybrid-distilled+rerank", as_searched, "rerank", 10), ("dense-base", others["dense-base"], "dense", 20),
             ("hybrid-base", others["dense-base"], "hybrid", 20), ("dense-human", others["dense-human"], "dense", 20)]
    with torch_threads(1):
        for system, pipe, mode, k in cases:
            for qid, q in qtext.items():
                got = runs[system][qid]
                want = pipe.search(q, mode=mode, k=k)
                assert list(got) == [h.product_id for h in want.results], (system, q)
                assert list(got.values()) == pytest.approx([h.score for h in want.results], abs=1e-5), (system, q)
        # the served configuration chosen on dev, measured on test, is what search gives with its settings
        s = ev.serving
        assert s is not None and rep["served"]["system"] == f"served: {s.name}"
        pipe = served.with_config(s.search_config(search_cfg), reranker=cached_reranker(cache) if s.mode == "rerank" else None)
        for qid, q in qtext.items():
            k = 10 if s.mode == "rerank" else 20
            assert list(runs[f"served: {s.name}"][qid]) == [h.product_id for h in pipe.search(q, mode=s.mode, k=k).results]
    dev = rep["dev"]
    assert dev["split"] == "dev" and dev["n_queries"] > 0 and dev["chosen"] == s.name
    assert set(dev["systems"]) >= {"bm25", "dense", "hybrid(bm25=1,dense=0.5)", "hybrid(bm25=1,dense=1)"}
    assert any(n.endswith("+rerank@4") for n in dev["systems"])
    assert any(n.endswith("+rerank@4(w=0.5)") for n in dev["systems"])  # the rerank_weight_grid blends (default grid)
    # the first stages on the rerank rows' own queries, so "does rerank lower hybrid on dev" reads like for like
    assert dev["rerank_queries"] == 3 < dev["n_queries"]
    same = {n: m for n, m in dev["systems"].items() if n.endswith("on the 3 rerank queries")}
    assert {n.split(" on the")[0] for n in same} == {"dense", max((n for n in dev["systems"] if n.startswith("hybrid(")
                                                                   and "+rerank" not in n and " on the" not in n),
                                                                  key=lambda n: dev["systems"][n]["nDCG@10"])}
    assert all(m["queries"] == 3 and m["note"] for m in same.values()) and dev["chosen"] not in same
    # a non-rerank choice carries the best dev rerank, and that is what rerank requests (and the report's row) use
    assert s.mode != "rerank"  # this fixture's dev serves a first stage (bm25)
    best = max((n for n in dev["systems"] if "+rerank" in n), key=lambda n: dev["systems"][n]["nDCG@10"])
    assert s.rerank["name"] == best and s.rerank["nDCG@10"] == dev["systems"][best]["nDCG@10"]
    cfg = s.search_config(search_cfg)
    assert (cfg.rerank_k, cfg.rerank_weight) == (s.rerank["rerank_k"], s.rerank["rerank_weight"]) and cfg.rerank_k == 4 != search_cfg.rerank_k
    assert rep["details"]["teacher"]["rerank_k"] == 4
    # rerank reuses the teacher scores of Task 1 and of the dev grid: no pair is scored twice
    ts = rep["details"]["teacher_scores"]
    assert ts["scored_now"] == len(ev.systems.teacher_cache.known) and ts["reused"] > 0


def test_eval_cli_writes_serving_and_search_uses_it(run, cli, tmp_path):
    root, data_cfg = run
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"data": {"path": data_cfg.path, "dev_fraction": 0.5},
                                  "eval": {"depth": 20, "teacher_dtype": "float32", "rerank_k_grid": [4]},
                                  "search": {"rerank_k": 6}}))
    proc = cli("eval", "--run", root, "--config", recipe, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(proc.stdout)
    serving = read_serving(root)
    assert serving is not None and rep["served"]["name"] == serving.name
    assert serving.chosen_on["split"] == "dev" and serving.chosen_on["queries"] == rep["dev"]["n_queries"]
    out = cli("search", "red shoes", "--run", root, "--json", "--k", "5")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["mode"] == serving.mode
    # eval on other data leaves the run's report byte-identical and writes beside it
    before = (root / "report.json").read_bytes()
    other = tmp_path / "other-data"
    shutil.copytree(data_cfg.path, other)
    proc = cli("eval", "--run", root, "--config", recipe, "--data", other, "--json", "--max-queries", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (root / "report.json").read_bytes() == before
    rep2 = json.loads(proc.stdout)
    assert rep2["files"]["report_json"] == str(root / "eval" / "other" / "other-data-test" / "report.json")
    assert (root / "eval" / "other" / "other-data-test" / "report.json").is_file()
    assert rep2["served"]["name"] == serving.name and read_serving(root) == serving
    # a recipe that still has eval.rrf_k gets one clear error naming the search: key
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"eval": {"rrf_k": 60}}))
    assert_user_error(cli("eval", "--run", root, "--config", bad), "search.rrf_k")


def test_teacher_score_cache_is_keyed_by_query_and_product_text(run, tmp_path):
    """A pair is scored once; another product text (or query text) under the same ids is scored afresh."""
    from reldistill.eval.teacher_scores import TeacherScoreCache

    root, _ = run
    with torch_threads(1):
        cache = TeacherScoreCache(root / "teacher", tmp_path, "float32", 4, runtime=TEST_RUNTIME)
        first = cache.scores(["red shoe", "red shoe"], ["leather boot", "garden hose"])
        assert cache.scored == 2
        again = TeacherScoreCache(root / "teacher", tmp_path, "float32", 4, runtime=TEST_RUNTIME)  # from the parquet on disk
        assert again.scores(["red shoe"], ["garden hose"])[0] == first[1] and again.scored == 0 and again.hits == 1
        again.scores(["red shoe", "blue shoe"], ["garden hose, 50 ft", "garden hose"])
        assert again.scored == 2  # other product text, other query text: both new
        other_dtype = TeacherScoreCache(root / "teacher", tmp_path, "bfloat16", 4, runtime=TEST_RUNTIME)
        assert other_dtype.path != cache.path and not other_dtype.known
