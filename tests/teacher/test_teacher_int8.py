"""Teacher int8 (dynamic quantisation of the linear layers) for CPUs without bf16: the gate keeps it only at
Spearman ≥ 0.99 to fp32, no dev Task-1 nDCG@10 drop and a speed-up, measured once per teacher and CPU."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from tests.teacher_testkit import esci_title_pairs, one_thread, tiny_teacher_dir
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def tdir(tmp_path_factory):
    return tiny_teacher_dir(tmp_path_factory, "int8", seed=1)


@pytest.fixture(scope="module")
def pairs(esci_dir):
    return esci_title_pairs(esci_dir, 120)


@pytest.fixture
def data_cfg(esci_dir):
    from reldistill.config import DataConfig

    return DataConfig(path=str(esci_dir), dev_fraction=0.15, seed=13)


@pytest.mark.slow
def test_int8_check_measures_speed_and_rank_agreement(tdir, pairs):
    from reldistill.teacher import Teacher
    from reldistill.teacher.int8 import INT8_MIN_SPEARMAN, int8_check

    q, t = pairs
    teacher = Teacher.load(tdir, dtype="float32", int8="off", runtime=TEST_RUNTIME)
    ref = teacher.score_logits(q, t)
    v = int8_check(teacher, q, t)
    assert v["pairs"] == len(q) and v["float32_pairs_per_s"] > 0 and v["int8_pairs_per_s"] > 0
    assert v["kept"] == (v["spearman"] >= INT8_MIN_SPEARMAN and v["speedup"] > 1.0)
    quant = teacher.score_logits(q, t)  # the teacher is now int8 (another identity: the memo does not answer)
    assert not np.allclose(quant, ref, atol=1e-6)
    assert v["spearman"] == pytest.approx(spearmanr(ref, quant).statistic, abs=1e-6)


def test_auto_is_the_default_only_without_bf16():
    from reldistill.errors import UserError
    from reldistill.settings import TEACHER_INT8_ENV, Runtime
    from reldistill.teacher.int8 import int8_mode

    assert int8_mode(Runtime.from_env({"RELDISTILL_CPU_BF16": "0"})) == "auto"
    assert int8_mode(Runtime.from_env({"RELDISTILL_CPU_BF16": "0", TEACHER_INT8_ENV: "off"})) == "off"
    with pytest.raises(UserError, match=r"\$RELDISTILL_TEACHER_INT8 must be auto or off, got 'maybe'\."):
        Runtime.from_env({TEACHER_INT8_ENV: "maybe"})


@pytest.mark.slow
def test_gate_measures_on_dev_once_per_teacher_and_cpu(tdir, data_cfg, pairs):
    from reldistill.teacher import Teacher
    from reldistill.teacher.int8 import GATE_FILE, INT8_CHECK_PAIRS, INT8_MIN_SPEARMAN, cpu_key, gate_pairs

    q, t = pairs
    (tdir / GATE_FILE).unlink(missing_ok=True)
    with one_thread():
        ref = Teacher.load(tdir, dtype="float32", int8="off", runtime=TEST_RUNTIME).score_logits(q, t, memo=False)
        teacher = Teacher.load(tdir, dtype="float32", int8="auto", data_cfg=data_cfg, runtime=TEST_RUNTIME)
        v = teacher.int8_verdict
        dev = gate_pairs(data_cfg)
        full = "int8_dev_ndcg10" in v  # else it stopped after a first look at INT8_CHECK_PAIRS pairs
        assert v["pairs"] == (len(dev) if full else min(INT8_CHECK_PAIRS, len(dev))) and not v["cached"]
        assert v["queries"] == dev["query_id"].nunique() >= 2
        rule = (v["spearman"] >= INT8_MIN_SPEARMAN and v["speedup"] > 1.0
                and (not full or v["int8_dev_ndcg10"] >= v["float32_dev_ndcg10"]))
        assert v["kept"] == rule == teacher.int8
        scores = teacher.score_logits(q, t, memo=False)
        assert np.allclose(scores, ref, atol=1e-5) != teacher.int8  # int8 scores differ; a rejected gate leaves fp32
        book = json.loads((tdir / GATE_FILE).read_text())
        assert book[cpu_key()]["kept"] == v["kept"]
        again = Teacher.load(tdir, dtype="float32", int8="auto", data_cfg=data_cfg, runtime=TEST_RUNTIME)
    assert again.int8_verdict["cached"] and again.int8 == teacher.int8 and again.forward_calls == 0  # not measured again


def test_a_failed_gate_leaves_the_fp32_teacher(tdir, data_cfg, pairs, monkeypatch):
    from reldistill.teacher import Teacher
    from reldistill.teacher import int8 as int8_mod

    q, t = pairs
    (tdir / int8_mod.GATE_FILE).unlink(missing_ok=True)
    monkeypatch.setattr(int8_mod, "INT8_MIN_SPEARMAN", 1.01)  # no int8 score can agree that well
    with one_thread():
        ref = Teacher.load(tdir, dtype="float32", int8="off", runtime=TEST_RUNTIME).score_logits(q, t, memo=False)
        teacher = Teacher.load(tdir, dtype="float32", int8="auto", data_cfg=data_cfg, runtime=TEST_RUNTIME)
        assert not teacher.int8 and not teacher.int8_verdict["kept"] and "Spearman" in teacher.int8_verdict["reason"]
        np.testing.assert_allclose(teacher.score_logits(q, t, memo=False), ref, atol=1e-6)
    (tdir / int8_mod.GATE_FILE).unlink()


@pytest.mark.slow
def test_score_file_on_a_cpu_without_bf16_uses_the_verdict(tdir, esci_dir, data_cfg, tmp_path, monkeypatch):
    from reldistill.teacher.int8 import GATE_FILE
    from reldistill.teacher.score import score_file_stats

    ex = pd.read_parquet(esci_dir / "shopping_queries_dataset_examples.parquet", columns=["query", "product_id", "product_locale"])
    src = tmp_path / "pairs.parquet"
    ex[ex["product_locale"] == "us"][["query", "product_id"]].head(80).to_parquet(src, index=False)
    (tdir / GATE_FILE).unlink(missing_ok=True)
    with one_thread():
        fp32 = pd.read_parquet(score_file_stats(tdir, src, tmp_path / "fp32.parquet", data_cfg, dtype="fp32", progress=False, runtime=TEST_RUNTIME)["out"])
        # what an AVX2-only CPU does: auto by default
        avx2 = dataclasses.replace(TEST_RUNTIME, teacher_int8=None, cpu_bf16=False)
        st = score_file_stats(tdir, src, tmp_path / "auto.parquet", data_cfg, dtype="auto", progress=False, runtime=avx2)
    out = pd.read_parquet(st["out"])
    same = np.allclose(out["teacher_logit"], fp32["teacher_logit"], atol=1e-5)
    assert st["int8"] is not None and same != st["int8"]["kept"]
    if st["int8"]["kept"]:
        assert spearmanr(out["teacher_logit"], fp32["teacher_logit"]).statistic >= 0.95  # ranks as fp32 does, on other pairs
