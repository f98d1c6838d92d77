"""`teacher eval` on the tiny teacher and a tiny judged table: MSE, nDCG, per-label distributions; metric units."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_user_error
from tests.teacher_testkit import ONE_THREAD, write_pairs_table


def test_ndcg_and_mse_units():
    from reldistill.teacher.metrics import evaluate_scores, mse, ndcg

    gains = [1.0, 0.1, 0.0]
    assert ndcg([0.9, 0.5, 0.1], gains) == pytest.approx(1.0)
    worst = ndcg([0.1, 0.5, 0.9], gains)
    assert worst < 0.6
    assert ndcg([0.5, 0.5, 0.5], gains) == pytest.approx(worst)  # ties earn no credit
    assert ndcg([0.3, 0.2], [0.0, 0.0]) is None
    assert mse(np.array([1.0, 0.0]), np.array([0.5, 0.0])) == pytest.approx(0.125)
    df = pd.DataFrame({"query_id": ["a", "a", "b"], "gain": [1.0, 0.0, 1.0], "soft_label": [1.0, 0.0, 1.0]})
    m = evaluate_scores(df, np.array([0.9, 0.1, 0.5]))
    assert m["ndcg_queries"] == 1 and m["ndcg"] == pytest.approx(1.0) and m["pairs"] == 3


@pytest.mark.slow
def test_teacher_eval_cli(cli, tmp_path):
    from tests.builders.tiny_teacher import build_tiny_teacher

    tdir = build_tiny_teacher(tmp_path / "teacher")
    data = write_pairs_table(tmp_path / "pairs.csv")
    proc = cli("teacher", "eval", "--teacher", tdir, "--data", data, "--split", "test", "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["metrics"]["pairs"] == 15 and res["metrics"]["ndcg_queries"] == 3
    assert 0 <= res["metrics"]["mse"] <= 1 and 0 < res["metrics"]["ndcg"] <= 1
    assert set(res["by_label"]) <= set("ESCI") and all(0 <= d["p50"] <= 1 for d in res["by_label"].values())
    assert_user_error(cli("teacher", "eval", "--teacher", tdir, "--data", data, "--split", "validation"), "--split")
