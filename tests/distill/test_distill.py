"""Distillation: candidate mining (no duplicates, no dev/test leak), each loss trains, human-only, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from reldistill.artifacts import file_fingerprint
from reldistill.config import DataConfig
from reldistill.data import load_esci
from reldistill.distill.mine import mine_candidates, with_dev_split
from reldistill.distill.train import training_summary
from reldistill.recipe.distill import DistillConfig
from tests.conftest import TEST_RUNTIME
from tests.distill_testkit import fake_scores, tiny, tiny_cfg  # noqa: F401 - tiny is a fixture


@pytest.fixture(scope="module")
def scored(tiny):
    cands = mine_candidates(tiny["data"], tiny_cfg(tiny), dev_fraction=0.2, seed=3, runtime=TEST_RUNTIME)
    path = tiny["root"] / "scores.parquet"
    fake_scores(cands).to_parquet(path, index=False)
    return cands, path


def test_mining_has_no_duplicates_and_only_train_queries(tiny, scored):
    cands, _ = scored
    ex = with_dev_split(tiny["data"], 0.2, 3)
    assert not cands.duplicated(["query_id", "product_id"]).any()
    held = ex[ex["split"] != "train"]
    assert set(held["split"]) == {"dev", "test"}  # the fixture really has held-out queries to leak
    assert not set(cands["query_id"]) & set(held["query_id"])
    assert not set(cands["query"].str.lower()) & set(held["query"].str.lower())
    assert set(cands["split"]) == {"train"}
    assert set(cands["source"]) == {"judged", "bm25", "dense"}
    judged = cands[cands["source"] == "judged"]
    assert judged["esci_label"].notna().all() and cands.loc[cands["source"] != "judged", "soft_label"].isna().all()
    assert set(cands["product_id"]) <= set(tiny["data"].products["product_id"])
    # single-pair ("unlabeled") train queries got mined products too, shallower than fully judged ones
    per_q = cands.groupby("query_id")["source"].agg(lambda s: int((s != "judged").sum()))
    n_judged = ex[ex["split"] == "train"].groupby("query_id").size()
    sparse = n_judged[n_judged == 1].index.intersection(per_q.index)
    assert len(sparse) and per_q[sparse].sum() > 0 and (per_q[sparse] <= 4).all()


def test_mining_user_queries_and_depth_cap(tiny, tmp_path):
    ex = with_dev_split(tiny["data"], 0.2, 3)
    test_query = ex.loc[ex["split"] == "test", "query"].iloc[0]
    qfile = tmp_path / "queries.txt"
    qfile.write_text(f"wooden kettle\n{test_query.upper()}\n\nwooden kettle\n", encoding="utf-8")
    cfg = tiny_cfg(tiny, dense_depth=0, drop_near_duplicates=False, queries_path=str(qfile), max_unlabeled_queries=2)
    cands = mine_candidates(tiny["data"], cfg, dev_fraction=0.2, seed=3, runtime=TEST_RUNTIME)
    user = cands[cands["query_id"].str.startswith("u:")]
    assert set(user["query"]) == {"wooden kettle"} and len(user) <= 2 and set(user["source"]) == {"bm25"}
    assert test_query.lower() not in set(cands["query"].str.lower())
    n_judged = ex[ex["split"] == "train"].groupby("query_id").size()
    sparse_in = set(cands["query_id"]) & set(n_judged[n_judged < 3].index)
    assert len(sparse_in) == 2


def test_mining_drops_near_duplicates_of_positives(tiny):
    keep = mine_candidates(tiny["data"], tiny_cfg(tiny, bm25_depth=0, drop_near_duplicates=False), dev_fraction=0.2, seed=3, runtime=TEST_RUNTIME)
    drop = mine_candidates(tiny["data"], tiny_cfg(tiny, bm25_depth=0, near_duplicate_threshold=0.5), dev_fraction=0.2, seed=3, runtime=TEST_RUNTIME)
    assert len(drop[drop["source"] == "dense"]) < len(keep[keep["source"] == "dense"])
    assert len(drop[drop["source"] == "judged"]) == len(keep[keep["source"] == "judged"])


def test_mining_catalog_encode_is_eval_base_students(tiny, tmp_path, monkeypatch):
    """Mining keeps its catalog encode where eval looks for the base student's: eval encodes nothing again."""
    from reldistill.eval import retrievers
    from reldistill.models import resolve_model
    from reldistill.student import catalog_encode, load_student

    cache = tmp_path / "eval-cache"
    cands = mine_candidates(tiny["data"], tiny_cfg(tiny, bm25_depth=0), dev_fraction=0.2, seed=3, runtime=TEST_RUNTIME,
                            catalog_cache=cache)
    assert (cands["source"] == "dense").any() and len(list(cache.glob("*/shard-*.npy"))) == 1
    products = tiny["data"].products
    ids, texts = products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist()
    model = load_student(tiny["student"], runtime=TEST_RUNTIME)
    fresh = retrievers.catalog_vectors("dense-base", model, resolve_model(tiny["student"], TEST_RUNTIME).path, ids, texts)[0]

    def no_encoding(*a, **k):
        raise AssertionError("the catalog was encoded again")

    monkeypatch.setattr(catalog_encode, "encode_documents", no_encoding)
    emb, source = retrievers.catalog_vectors("dense-base", model, resolve_model(tiny["student"], TEST_RUNTIME).path, ids, texts,
                                             cache_dir=cache)
    assert source == "eval cache" and np.allclose(emb, fresh, atol=1e-5)


def test_mining_real_sample_bm25_never_leaks(esci_dir):
    data = load_esci(DataConfig(path=str(esci_dir)))
    cfg = DistillConfig(bm25_depth=3, dense_depth=0, drop_near_duplicates=False, max_unlabeled_queries=100)
    cands = mine_candidates(data, cfg, dev_fraction=0.15, seed=13, runtime=TEST_RUNTIME)
    ex = with_dev_split(data, 0.15, 13)
    assert not cands.duplicated(["query_id", "product_id"]).any()
    assert not set(cands["query_id"]) & set(ex.loc[ex["split"] != "train", "query_id"])
    assert cands["query_id"].nunique() == 100 + ex[ex["split"] == "train"].groupby("query_id").size().ge(5).sum()


@pytest.mark.slow
@pytest.mark.parametrize("loss,mnrl", [("margin-mse", 0.0), ("kl", 0.0), ("mse", 0.0), ("margin-mse", 0.5)])
def test_each_loss_trains_and_saves_a_plain_st_folder(tiny, scored, tmp_path, loss, mnrl):
    from sentence_transformers import SentenceTransformer

    from reldistill.distill.train import train_student

    _, path = scored
    out = train_student(path, tmp_path / "student", tiny_cfg(tiny, loss=loss, mnrl_weight=mnrl, epochs=1), tiny["data_cfg"], runtime=TEST_RUNTIME)
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "student" and m["loss"] == loss and m["steps"] == 2
    assert set(m["train_rows"]) == ({"distill", "mnrl"} if mnrl else {"distill"})
    assert m["data"]["fingerprint"] and m["scores"]["sha256"]
    assert m["dev"]["history"] and 0 <= m["dev"]["best"]["ndcg@10"] <= 1
    assert not (tmp_path / "student.checkpoints").exists()
    emb = SentenceTransformer(str(out), device="cpu").encode(["red shoe"])
    assert emb.shape == (1, 32) and np.isfinite(emb).all()


@pytest.mark.slow
def test_training_changes_the_student_and_resumes(tiny, scored, tmp_path):
    from sentence_transformers import SentenceTransformer

    from reldistill.distill.train import checkpoint_dir, train_student

    _, path = scored
    cfg = tiny_cfg(tiny, max_steps=4, eval_each="steps", eval_steps=0.5, lr=1e-3)
    out = train_student(path, tmp_path / "s", cfg, tiny["data_cfg"], runtime=TEST_RUNTIME)
    before = SentenceTransformer(tiny["student"], device="cpu").encode(["blue mug"])
    after = SentenceTransformer(str(out), device="cpu").encode(["blue mug"])
    assert not np.allclose(before, after)
    hist = json.loads((out / "manifest.json").read_text())["dev"]["history"]
    assert [h["steps"] for h in hist] == [2, 4]
    # a crash after the checkpoints were written (here: while saving the final folder) → the rerun resumes
    from reldistill.distill import train as train_mod

    seen = []
    real_last, real_atomic = train_mod.last_checkpoint, train_mod.atomic_path

    def spy(d, key):
        seen.append(real_last(d, key))
        return seen[-1]

    def crash(path, **kw):
        raise KeyboardInterrupt

    cfg2 = tiny_cfg(tiny, max_steps=2, eval_each="steps", eval_steps=1)
    train_mod.last_checkpoint, train_mod.atomic_path = spy, crash
    try:
        with pytest.raises(KeyboardInterrupt):
            train_student(path, tmp_path / "r", cfg2, tiny["data_cfg"], runtime=TEST_RUNTIME)
        assert not (tmp_path / "r").exists() and checkpoint_dir(tmp_path / "r").is_dir()
        train_mod.atomic_path = real_atomic
        out = train_student(path, tmp_path / "r", cfg2, tiny["data_cfg"], runtime=TEST_RUNTIME)
    finally:
        train_mod.last_checkpoint, train_mod.atomic_path = real_last, real_atomic
    assert seen[0] is None and seen[1] is not None and seen[1].endswith("checkpoint-2")
    assert json.loads((out / "manifest.json").read_text())["steps"] >= 2  # resumed at step 2, not from 0
    assert not checkpoint_dir(tmp_path / "r").exists()


@pytest.mark.slow
def test_human_only_student(tiny, tmp_path):
    from sentence_transformers import SentenceTransformer

    from reldistill.distill.train import train_human_student

    out = train_human_student(tmp_path / "h", tiny_cfg(tiny, mnrl_weight=0.5), tiny["data_cfg"], runtime=TEST_RUNTIME)
    m = json.loads((out / "manifest.json").read_text())
    assert m["teacher"] is None and "human" in m["loss"] and m["scores"]["human_labels_only"]
    assert (out / "calibration.json").is_file() and m["calibration"]["dev"]["split"] == "dev"  # fitted where it is made
    SentenceTransformer(str(out), device="cpu")
    assert training_summary(m) == {"labels": "human", "pairs": m["scores"]["pairs"], "queries": m["scores"]["queries"],
                                   "steps": m["steps"], "rows_seen": m["steps"] * 4}


def test_training_summary_reads_what_a_student_saw_and_nothing_for_a_base_model():
    teacher = {"steps": 110, "config": {"batch_size": 32}, "scores": {"path": "s.parquet", "pairs": 8048, "queries": 490}}
    assert training_summary(teacher) == {"labels": "teacher", "pairs": 8048, "queries": 490, "steps": 110, "rows_seen": 3520}
    human = {"steps": 25, "config": {"batch_size": 32}, "scores": {"human_labels_only": True, "pairs": 8627, "queries": 2070}}
    assert training_summary(human)["labels"] == "human" and training_summary(human)["rows_seen"] == 800
    assert training_summary({"kind": "student"}) is None and training_summary({"scores": {"pairs": 3}}) is None


@pytest.mark.slow
def test_label_with_tiny_teacher_then_train_via_cli(tiny, tmp_path, cli):
    from tests.builders.tiny_teacher import build_tiny_teacher

    run = tmp_path / "run"
    build_tiny_teacher(run / "teacher")
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(json.dumps({"data": {"path": tiny["data_cfg"].path, "dev_fraction": 0.2, "seed": 3},
                               "distill": {"student": tiny["student"], "bm25_depth": 3, "dense_depth": 2, "min_judged": 3,
                                           "batch_size": 4, "max_steps": 2, "max_seq_length": 32}}))
    for args in (("mine",), ("label",), ("train", "--loss", "mse")):
        proc = cli("distill", *args, "--config", cfg, "--run", run)
        assert proc.returncode == 0, proc.stderr[-3000:]
    scores = pd.read_parquet(run / "scores" / "scores.parquet")
    cands = pd.read_parquet(run / "candidates" / "candidates.parquet")
    assert len(scores) == len(cands) and scores["teacher_score"].between(0, 1).all()
    # each stage's library function wrote its own manifest
    mc = json.loads((run / "candidates" / "manifest.json").read_text())
    assert mc["kind"] == "candidates" and mc["pairs"] == len(cands) and sum(mc["by_source"].values()) == len(cands)
    ms = json.loads((run / "scores" / "manifest.json").read_text())
    assert ms["kind"] == "scores" and ms["pairs"] == len(scores) and ms["teacher"] == str((run / "teacher").resolve())
    assert ms["candidates_sha256"] == file_fingerprint(run / "candidates" / "candidates.parquet")
    m = json.loads((run / "student" / "manifest.json").read_text())
    assert m["teacher"]["dir"] == str((run / "teacher").resolve()) and m["loss"] == "mse"
    proc = cli("distill", "eval", "--config", cfg, "--run", run, "--out", run / "students.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((run / "students.json").read_text())
    assert set(table) == {tiny["student"], str(run / "student")}
    assert all(0 <= r[s]["ndcg@10"] <= 1 and 0 <= r[s]["recall@100"] <= 1 for r in table.values() for s in ("dev", "test"))


@pytest.mark.slow
def test_real_minilm_distils_and_loads_with_plain_sentence_transformer(esci_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from reldistill.distill.train import train_student

    data_cfg = DataConfig(path=str(esci_dir))
    data = load_esci(data_cfg)
    cfg = DistillConfig(bm25_depth=3, dense_depth=0, drop_near_duplicates=False, max_unlabeled_queries=30,
                        max_steps=3, batch_size=8, eval_split="none", mnrl_weight=0.3)
    cands = mine_candidates(data, cfg, dev_fraction=data_cfg.dev_fraction, seed=data_cfg.seed, runtime=TEST_RUNTIME)
    path = tmp_path / "scores.parquet"
    fake_scores(cands).to_parquet(path, index=False)
    out = train_student(path, tmp_path / "student", cfg, data_cfg, runtime=TEST_RUNTIME)
    model = SentenceTransformer(str(out))
    emb = model.encode(["usb c charger", "wireless mouse"], normalize_embeddings=True)
    assert emb.shape == (2, 384) and np.isfinite(emb).all()
    assert json.loads((out / "manifest.json").read_text())["steps"] == 3
