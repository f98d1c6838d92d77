"""Teacher int8 (dynamic quantisation of the linear layers) for CPUs without bf16: kept only at Spearman ≥ 0.99 and faster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr


@pytest.fixture(scope="module")
def tdir(tmp_path_factory):
    from reldistill.teacher.tiny import build_tiny_teacher

    return build_tiny_teacher(tmp_path_factory.mktemp("int8") / "teacher", seed=1)


@pytest.fixture(scope="module")
def pairs(esci_dir):
    ex = pd.read_parquet(esci_dir / "shopping_queries_dataset_examples.parquet", columns=["query", "product_id", "product_locale"])
    pr = pd.read_parquet(esci_dir / "shopping_queries_dataset_products.parquet", columns=["product_id", "product_title"])
    ex = ex[ex["product_locale"] == "us"].merge(pr, on="product_id").head(120)
    return ex["query"].tolist(), ex["product_title"].astype(str).tolist()


def test_int8_check_measures_speed_and_rank_agreement(tdir, pairs):
    from reldistill.teacher import Teacher
    from reldistill.teacher.score import INT8_MIN_SPEARMAN, int8_check

    q, t = pairs
    teacher = Teacher.load(tdir, dtype="float32")
    ref = teacher.score_logits(q, t)
    v = int8_check(teacher, q, t)
    assert v["pairs"] == len(q) and v["float32_pairs_per_s"] > 0 and v["int8_pairs_per_s"] > 0
    assert v["kept"] == (v["spearman"] >= INT8_MIN_SPEARMAN and v["speedup"] > 1.0)
    quant = teacher.score_logits(q, t)  # the teacher is now int8
    assert not np.allclose(quant, ref, atol=1e-6)
    assert v["spearman"] == pytest.approx(spearmanr(ref, quant).statistic, abs=1e-6)


def test_maybe_int8_is_off_unless_asked_and_skips_non_fp32(tdir, pairs, monkeypatch):
    from reldistill.teacher import Teacher
    from reldistill.teacher.score import TEACHER_INT8_ENV, maybe_int8

    q, t = pairs
    monkeypatch.delenv(TEACHER_INT8_ENV, raising=False)
    assert maybe_int8(Teacher.load(tdir, dtype="float32"), q, t) is None
    monkeypatch.setenv(TEACHER_INT8_ENV, "auto")
    assert maybe_int8(Teacher.load(tdir, dtype="bfloat16"), q, t) is None  # bf16 hardware path: nothing to do
    assert set(maybe_int8(Teacher.load(tdir, dtype="float32"), q, t)) >= {"spearman", "speedup", "kept"}


def test_score_file_with_int8_auto_matches_the_verdict(tdir, esci_dir, tmp_path, monkeypatch):
    from reldistill.config import DataConfig
    from reldistill.teacher.score import TEACHER_INT8_ENV, score_file

    ex = pd.read_parquet(esci_dir / "shopping_queries_dataset_examples.parquet", columns=["query", "product_id", "product_locale"])
    src = tmp_path / "pairs.parquet"
    ex[ex["product_locale"] == "us"][["query", "product_id"]].head(80).to_parquet(src, index=False)
    cfg = DataConfig(path=str(esci_dir))
    fp32 = pd.read_parquet(score_file(tdir, src, tmp_path / "fp32.parquet", cfg, dtype="fp32", progress=False))
    monkeypatch.setenv(TEACHER_INT8_ENV, "auto")
    out = pd.read_parquet(score_file(tdir, src, tmp_path / "int8.parquet", cfg, dtype="fp32", progress=False))
    rho = spearmanr(out["teacher_logit"], fp32["teacher_logit"]).statistic
    same = np.allclose(out["teacher_logit"], fp32["teacher_logit"], atol=1e-5)
    assert same or rho >= 0.99  # either fp32 was kept, or int8 was and it ranks as fp32 does
