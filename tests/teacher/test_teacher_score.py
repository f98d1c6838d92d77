"""`teacher score` / score_file on the tiny teacher: output, catalog text, shards, kill -9, accelerate, dtype bench, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, assert_user_error
from tests.teacher_testkit import ONE_THREAD, env, one_thread
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def tdir(tmp_path_factory):
    from tests.builders.tiny_teacher import build_tiny_teacher

    return build_tiny_teacher(tmp_path_factory.mktemp("score") / "teacher", seed=1)


@pytest.fixture(scope="module")
def sample_pairs(esci_dir, tmp_path_factory):
    """Real ESCI sample pairs (query, product_id; text comes from the catalog)."""
    ex = pd.read_parquet(esci_dir / "shopping_queries_dataset_examples.parquet", columns=["query", "product_id", "product_locale"])
    ex = ex[ex["product_locale"] == "us"][["query", "product_id"]].reset_index(drop=True)
    path = tmp_path_factory.mktemp("pairs") / "pairs.parquet"
    ex.iloc[:1500].to_parquet(path, index=False)
    return path


def test_score_file_with_catalog_text_matches_teacher(tdir, sample_pairs, esci_dir, tmp_path):
    from reldistill.config import DataConfig
    from reldistill.data import load_products
    from reldistill.teacher import Teacher
    from reldistill.teacher.score import score_file_stats

    cfg = DataConfig(path=str(esci_dir))
    with one_thread():
        st = score_file_stats(tdir, sample_pairs, tmp_path / "scores.parquet", cfg, batch_size=16, dtype="fp32",
                              shard_size=70, progress=False, limit=200, runtime=TEST_RUNTIME)
        out = pd.read_parquet(st["out"])
        assert list(out.columns) == ["query", "product_id", "teacher_score", "teacher_logit"]
        assert len(out) == 200 and st["shards"] == 3 and st["scored_now"] == 200
        np.testing.assert_allclose(out["teacher_score"], 1 / (1 + np.exp(-out["teacher_logit"].astype(np.float64))), atol=1e-6)
        products, _ = load_products(cfg, set(out["product_id"]))
        text = out["product_id"].map(products.set_index("product_id")["text"])
        direct = Teacher.load(tdir, dtype="float32", runtime=TEST_RUNTIME).score_pairs(out["query"].tolist(), text.tolist())
        np.testing.assert_allclose(out["teacher_score"], direct, atol=1e-5)
        # rerun: every shard is already done
        again = score_file_stats(tdir, sample_pairs, tmp_path / "scores.parquet", cfg, batch_size=16, dtype="fp32",
                                 shard_size=70, progress=False, limit=200, runtime=TEST_RUNTIME)
    assert again["scored_now"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(again["out"]), out)


@pytest.mark.slow
def test_kill9_scoring_then_rerun_skips_shards_and_matches(tdir, sample_pairs, esci_dir, tmp_path):
    from reldistill.config import DataConfig
    from reldistill.teacher.score import score_file, shard_dir_for

    out = tmp_path / "killed.parquet"
    cmd = [sys.executable, "-m", "reldistill.workflow.cli", "teacher", "score", "--teacher", str(tdir), "--pairs", str(sample_pairs),
           "--out", str(out), "--dtype", "fp32", "--shard-size", "100", "--batch-size", "16", "--data", str(esci_dir)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sdir = shard_dir_for(out)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 180 and proc.poll() is None and len(list(sdir.glob("shard-*.parquet"))) < 3:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = len(list(sdir.glob("shard-*.parquet")))
    assert 3 <= done < 15, "the run was killed part way"
    assert not out.exists()
    rerun = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"scored 1,500 pairs ({1500 - done * 100:,} now" in " ".join(rerun.stdout.split())
    with one_thread():
        ref = score_file(tdir, sample_pairs, tmp_path / "ref.parquet", DataConfig(path=str(esci_dir)), batch_size=16,
                         dtype="fp32", shard_size=100, progress=False, runtime=TEST_RUNTIME)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref))


# 2-process sharded scoring under `accelerate launch` equal to one process (1,000 pairs):
# tests/test_production.py::test_production_dryrun_on_a_tiny_config.


@pytest.mark.slow
def test_compare_dtypes_reports_pairs_per_second(cli, tdir, tmp_path):
    pairs = tmp_path / "p.parquet"
    pd.DataFrame({"query": ["red shoes", "green tea"] * 20, "product_id": [f"x{i}" for i in range(40)],
                  "text": ["nike shoes red", "organic tea bags"] * 20}).to_parquet(pairs)
    proc = cli("teacher", "score", "--teacher", tdir, "--pairs", pairs, "--out", tmp_path / "o.parquet",
               "--compare-dtypes", "--dtype", "fp32", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    assert "float32:" in proc.stdout and "bfloat16:" in proc.stdout and "pairs/s" in proc.stdout
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 40


@pytest.mark.slow
def test_score_bad_inputs(cli, tdir, tmp_path, esci_dir):
    from reldistill.config import DataConfig
    from reldistill.errors import UserError
    from reldistill.teacher.score import score_file

    out = tmp_path / "out.parquet"

    def fails(pairs, match, teacher=tdir, **kw):
        with pytest.raises(UserError, match=match):
            score_file(teacher, pairs, out, DataConfig(path=str(esci_dir)), progress=False, runtime=TEST_RUNTIME, **kw)

    good = pd.DataFrame({"query": ["a", "b"], "product_id": ["p1", "p2"], "text": ["x", "y"]})
    p = tmp_path / "nocol.parquet"
    good.drop(columns=["product_id"]).to_parquet(p)
    fails(p, "no column 'product_id'")
    p = tmp_path / "trunc.parquet"
    good.to_parquet(p)
    p.write_bytes(p.read_bytes()[:50])
    fails(p, "not a readable parquet.*truncated")
    p = tmp_path / "empty.parquet"
    good.iloc[:0].to_parquet(p)
    fails(p, "no rows")
    p = tmp_path / "nullq.parquet"
    good.assign(query=[None, "b"]).to_parquet(p)
    fails(p, "empty query")
    p = tmp_path / "nulltext.parquet"
    good.assign(text=["x", None]).to_parquet(p)
    fails(p, "empty text")
    p = tmp_path / "unknown.parquet"
    good.drop(columns=["text"]).to_parquet(p)
    fails(p, "product_id 'p1'.*not in the products")
    fails(tmp_path / "nope.parquet", "does not exist")
    good.to_parquet(tmp_path / "ok.parquet")
    fails(tmp_path / "ok.parquet", "--dtype", dtype="fp8")
    fails(tmp_path / "ok.parquet", "does not exist", teacher=tmp_path / "noteacher")
    assert not out.exists()
    # through the CLI: one sentence, exit 2, no traceback
    proc = cli("teacher", "score", "--teacher", tdir, "--pairs", tmp_path / "nocol.parquet", "--out", out, env=ONE_THREAD)
    assert_user_error(proc, "no column 'product_id'")
    assert not out.exists()
