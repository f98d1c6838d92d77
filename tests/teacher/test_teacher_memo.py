"""The teacher's score memo: a pair scored once is never run through the model again (same teacher, same input),
and `POST /rerank` tokenizes each document once (budget check and scoring share the ids)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.retrieval_testkit import small_run, torch_threads
from tests.teacher_testkit import esci_title_pairs, tiny_teacher_dir
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def tdir(tmp_path_factory):
    return tiny_teacher_dir(tmp_path_factory, "memo", seed=3)


@pytest.fixture(scope="module")
def pairs(esci_dir):
    return esci_title_pairs(esci_dir, 40)


def _teacher(tdir, **kw):
    from reldistill.teacher import Teacher
    from reldistill.teacher.score_memo import ScoreMemo

    t = Teacher.load(tdir, dtype="float32", **{"runtime": TEST_RUNTIME, **kw})
    t.memo = ScoreMemo(1000)
    return t


def test_scoring_the_same_pairs_twice_runs_the_model_once(tdir, pairs):
    q, t = pairs
    teacher = _teacher(tdir)
    with torch_threads(1):
        first = teacher.score_pairs(q, t, batch_size=8)
        calls = teacher.forward_calls
        assert calls == -(-len(set(zip(q, t))) // 8)  # every distinct pair once, 8 a batch
        again = teacher.score_pairs(q, t, batch_size=8)
        assert teacher.forward_calls == calls  # nothing run
        np.testing.assert_array_equal(again, first)
        mixed = teacher.score_pairs(q[:5] + ["a query never seen"] + q[:5], t[:5] + [t[0]] + t[:5], batch_size=8)
        assert teacher.forward_calls == calls + 1  # only the new pair, once
        np.testing.assert_array_equal(mixed[:5], first[:5])
        np.testing.assert_array_equal(mixed[6:], first[:5])
        fresh = teacher.score_pairs(q, t, batch_size=8, memo=False)  # the model itself gives the same scores
    np.testing.assert_allclose(fresh, first, atol=1e-6)
    assert teacher.memo.hits == len(q) + 10  # the second call and the ten repeated pairs of the third


def test_a_score_is_reused_only_for_the_same_teacher_and_input(tdir, pairs, tmp_path):
    from reldistill.teacher.int8 import quantize_linear_int8
    from reldistill.teacher.score_memo import ScoreMemo
    from tests.builders.tiny_teacher import build_tiny_teacher

    q, t = pairs[0][:8], pairs[1][:8]
    memo = ScoreMemo(1000)
    a = _teacher(tdir)
    a.memo = memo
    other = _teacher(build_tiny_teacher(tmp_path / "other", seed=4))
    other.memo = memo
    with torch_threads(1):
        a.score_pairs(q, t)
        other.score_pairs(q, t)
        assert other.forward_calls == 1  # another artifact: scored, not taken from a's entries
        b = _teacher(tdir)  # the same artifact loaded again: a's scores answer
        b.memo = memo
        b.score_pairs(q, t)
        assert b.forward_calls == 0
        quantize_linear_int8(b)  # int8 is another identity
        b.score_pairs(q, t)
        assert b.forward_calls == 1
        b.cfg.max_length -= 1  # so is another max_length (and template)
        b.encoder.max_length -= 1
        b.score_pairs(q, t)
        assert b.forward_calls == 2


def test_memo_is_a_bounded_lru():
    from reldistill.teacher.score_memo import ScoreMemo, memo_off, pair_key

    m = ScoreMemo(3)
    keys = [pair_key("t", f"q{i}", "x") for i in range(5)]
    m.put_many(keys[:3], [0.0, 1.0, 2.0])
    assert m.get_many([keys[0]]) == [0.0]  # keys[0] is now the most recent
    m.put_many(keys[3:], [3.0, 4.0])
    assert len(m) == 3
    assert m.get_many(keys) == [0.0, None, None, 3.0, 4.0]
    with memo_off(m):
        assert m.max_pairs == 0
    assert m.max_pairs == 3


@pytest.fixture(scope="module")
def run(tmp_path_factory, esci_dir):
    return small_run(tmp_path_factory, esci_dir)


def test_rerank_endpoint_tokenizes_each_document_once_and_reuses_scores(run, tdir):
    from reldistill.recipe.retrieval import ServeConfig
    from reldistill.retrieval.pipeline import SearchPipeline
    from reldistill.retrieval.service import create_app
    from reldistill.teacher.rerank import TeacherReranker

    teacher = _teacher(tdir)
    seen: list[str] = []
    real = teacher.encoder._ids

    def counting(texts):
        seen.extend(texts)
        return real(texts)

    teacher.encoder._ids = counting
    rr = TeacherReranker(teacher)
    docs = ["red running shoes for men", "stainless steel water bottle", "kids toys", "running shoes women size 8"]
    with torch_threads(1):
        pipe = SearchPipeline.from_run(run[0], reranker=rr, runtime=TEST_RUNTIME)
        client = TestClient(create_app(pipe, ServeConfig(), reranker=rr), base_url="http://127.0.0.1")
        first = client.post("/rerank", json={"query": "running shoes", "documents": docs})
        assert first.status_code == 200, first.text
        assert all(seen.count(d) == 1 for d in docs)  # budget check and scoring: one tokenization
        calls = teacher.forward_calls
        second = client.post("/rerank", json={"query": "running shoes", "documents": docs})
        hit = pipe.search("running shoes", mode="rerank", k=3, rerank_k=5)
        hit_again = pipe.search("running shoes", mode="rerank", k=3, rerank_k=5)
    assert teacher.forward_calls == calls + 1  # the second request scored nothing; search's first rerank its pool
    assert [(r["index"], r["relevance_score"]) for r in second.json()["results"]] == \
           [(r["index"], r["relevance_score"]) for r in first.json()["results"]]
    assert [h.product_id for h in hit.results] == [h.product_id for h in hit_again.results]
    assert all(seen.count(d) == 1 for d in docs)
