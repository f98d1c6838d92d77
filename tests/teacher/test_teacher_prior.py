"""The teacher's bi-encoder prior: dev picks the LLM weight, the blend is standardised, every scorer applies it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.teacher_testkit import one_thread, tiny_teacher_dir, write_pairs_table, write_recipe
from tests.conftest import TEST_RUNTIME


def _dev(n_queries: int = 6, per_query: int = 4) -> pd.DataFrame:
    rows = []
    for q in range(n_queries):
        for p in range(per_query):
            rows.append({"query_id": f"q{q}", "query": f"query {q}", "text": f"text {q} {p}",
                         "gain": [1.0, 0.1, 0.01, 0.0][p % 4]})
    return pd.DataFrame(rows)


def test_fit_prior_keeps_the_weight_that_ranks_dev_best(monkeypatch):
    from reldistill.teacher import prior as mod

    dev = _dev()
    good = dev["gain"].to_numpy() * 3 + np.tile([0.0, 0.1, 0.2, 0.3], 6) * 0.01  # ranks by gain
    bad = -good  # ranks backwards
    # the LLM ranks well and the bi-encoder backwards: the LLM alone (w = 1) wins
    monkeypatch.setattr(mod, "cosines", lambda student, q, t, runtime=None: bad)
    block = mod.fit_prior(dev, good, "st", [0.25, 0.5, 1.0])
    assert block["weight"] == 1.0 and block["dev_queries"] == 6
    assert set(block["dev_ndcg10"]) == {"0.25", "0.5", "1"} and block["dev_ndcg10"]["1"] == 1.0
    assert mod.Prior.from_manifest(block) is None  # w = 1: the teacher is the LLM alone
    # the other way round: the smallest LLM weight in the grid wins, and the blend is kept
    monkeypatch.setattr(mod, "cosines", lambda student, q, t, runtime=None: good)
    block = mod.fit_prior(dev, bad, "st", [0.25, 0.5, 1.0])
    assert block["weight"] == 0.25 and block["dev_ndcg10"]["0.25"] > block["dev_ndcg10"]["1"]
    p = mod.Prior.from_manifest(block)
    assert p is not None and p.weight == 0.25
    # both terms are standardised on the dev pairs: the blend of the dev scores has mean 0
    assert abs(p.blend(bad, good).mean()) < 1e-9
    expect = 0.25 * (bad - bad.mean()) / bad.std() + 0.75 * (good - good.mean()) / good.std()
    np.testing.assert_allclose(p.blend(bad, good), expect, rtol=1e-9)


def test_prior_weights_are_validated():
    from reldistill.errors import UserError
    from reldistill.recipe.teacher import TeacherConfig

    for bad in ([], [0.0, 0.5], [1.5], ["half"]):
        with pytest.raises(UserError, match="prior_weights"):
            TeacherConfig(prior_weights=bad)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    from tests.builders.tiny_student import build_tiny_student

    teacher = tiny_teacher_dir(tmp_path_factory, "prior-teacher", seed=3)
    student = build_tiny_student(tmp_path_factory.mktemp("prior-student"), normalize=True)
    return teacher, student


def test_a_teacher_with_a_prior_scores_the_blend_everywhere(tiny_pair, monkeypatch):
    from reldistill.student.encode import encode_documents, encode_queries, load_student
    from reldistill.teacher.prior import Prior
    from reldistill.teacher.rerank import TeacherReranker
    from reldistill.teacher.teacher import Teacher

    teacher_dir, student_dir = tiny_pair
    queries = ["red shoes", "green tea", "red shoes"]
    texts = ["red running shoes size 9", "green tea bags", "a desk lamp"]
    with one_thread():
        llm = Teacher.load(teacher_dir, dtype="float32", int8="off", runtime=TEST_RUNTIME).score_logits(queries, texts, memo=False)
        manifest = json.loads((teacher_dir / "manifest.json").read_text())
        manifest["prior"] = {"student": str(student_dir), "weight": 0.5, "llm_mean": 0.1, "llm_std": 2.0,
                             "cos_mean": 0.3, "cos_std": 0.5}
        (teacher_dir / "manifest.json").write_text(json.dumps(manifest))
        t = Teacher.load(teacher_dir, dtype="float32", int8="off", runtime=TEST_RUNTIME)
        st = load_student(str(student_dir), backend="torch", runtime=TEST_RUNTIME)
        cos = np.sum(encode_queries(st, queries) * encode_documents(st, texts), axis=1)
        want = 0.5 * (llm - 0.1) / 2.0 + 0.5 * (cos - 0.3) / 0.5
        assert isinstance(t.prior, Prior)
        np.testing.assert_allclose(t.score_logits(queries, texts), want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(t.score_logits(queries, texts, prior=False), llm, rtol=1e-4, atol=1e-5)
        # rerank goes through the same score: its order is the blend's
        ranked = TeacherReranker(t).rerank("red shoes", [("a", texts[0]), ("b", texts[2])])
        blend_a, blend_b = want[0], want[2]
        assert [r.id for r in ranked] == (["a", "b"] if blend_a >= blend_b else ["b", "a"])
        # eval's "teacher (LLM alone)" row scores the same pairs without the blend, in its own cache
        from reldistill.eval.teacher_scores import TeacherScoreCache

        cache_dir = teacher_dir.parent / "eval-cache"
        blended = TeacherScoreCache(teacher_dir, cache_dir, "float32", runtime=TEST_RUNTIME).scores(queries, texts)
        alone = TeacherScoreCache(teacher_dir, cache_dir, "float32", prior=False, runtime=TEST_RUNTIME).scores(queries, texts)
        np.testing.assert_allclose(alone, 1 / (1 + np.exp(-llm)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(blended, 1 / (1 + np.exp(-want)), rtol=1e-4, atol=1e-5)
    del manifest["prior"]
    (teacher_dir / "manifest.json").write_text(json.dumps(manifest))


def test_training_with_a_prior_records_the_dev_choice(tmp_path, tiny_pair, monkeypatch):
    import yaml

    from reldistill.recipe import load_recipe
    from reldistill.teacher.teacher import Teacher
    from tests.builders.tiny_teacher import build_tiny_base
    from reldistill.teacher.train import train_teacher

    _, student_dir = tiny_pair
    base = build_tiny_base(tmp_path / "base", seed=0, layers=2)
    data = write_pairs_table(tmp_path / "pairs.csv", queries=16, per_query=5)
    path = write_recipe(tmp_path / "r.yaml", base, data, max_steps=1)
    r = yaml.safe_load(path.read_text())
    r["teacher"].update({"prior_student": str(student_dir), "prior_weights": [0.5, 1.0]})
    path.write_text(yaml.safe_dump(r))
    with one_thread():
        out = train_teacher(load_recipe(path), tmp_path / "t", progress=False, runtime=TEST_RUNTIME)
    block = json.loads((out / "manifest.json").read_text())["prior"]
    assert block["student"] == str(student_dir) and block["weight"] in (0.5, 1.0)
    assert set(block["dev_ndcg10"]) == {"0.5", "1"} and block["dev_queries"] >= 1
    assert block["dev_ndcg10"][f"{block['weight']:g}"] == max(block["dev_ndcg10"].values())
    t = Teacher.load(out, dtype="float32", int8="off", runtime=TEST_RUNTIME)
    assert (t.prior is None) == (block["weight"] == 1.0)
