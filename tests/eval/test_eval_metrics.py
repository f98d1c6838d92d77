"""Metric code against hand-computed values (graded nDCG with the ESCI gains), and the paired tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reldistill.errors import UserError
from reldistill.eval.metrics import evaluate, metric_specs, to_qrels, to_run
from reldistill.eval.significance import compare_to_baselines, paired_test
from reldistill.labels import DEFAULT_GAINS as G
from reldistill.recipe.eval import EvalConfig

L2 = math.log2


def ndcg_linear(ranked_gains, all_gains, k: int) -> float:
    """Independent reference nDCG@k with linear gains (the hand computation the package is checked against)."""
    g = np.asarray(ranked_gains, dtype=np.float64)[:k]
    dcg = float((g / np.log2(np.arange(2, len(g) + 2))).sum())
    ideal = np.sort(np.asarray(all_gains, dtype=np.float64))[::-1][:k]
    idcg = float((ideal / np.log2(np.arange(2, len(ideal) + 2))).sum())
    return dcg / idcg if idcg > 0 else 0.0


@pytest.mark.slow
def test_graded_ndcg_matches_hand_computation_with_esci_gains():
    # q1 judged: a=E, b=S, c=C, d=I. The run ranks b, d, a, x (x unjudged → gain 0).
    qrels = {"q1": {"a": G["E"], "b": G["S"], "c": G["C"], "d": G["I"]},
             "q2": {"e": G["E"], "f": G["E"], "g": G["S"]}}
    run = {"q1": {"b": 4.0, "d": 3.0, "a": 2.0, "x": 1.0},
           "q2": {"y": 3.0, "g": 2.0, "f": 1.0}}
    # By hand, linear gains, DCG = sum g_i / log2(i + 1):
    dcg1 = 0.1 / L2(2) + 0.0 / L2(3) + 1.0 / L2(4) + 0.0 / L2(5)  # = 0.1 + 0.5 = 0.6
    idcg1 = 1.0 / L2(2) + 0.1 / L2(3) + 0.01 / L2(4)              # E, S, C (I adds 0)
    dcg2 = 0.0 / L2(2) + 0.1 / L2(3) + 1.0 / L2(4)
    idcg2 = 1.0 / L2(2) + 1.0 / L2(3) + 0.1 / L2(4)
    assert dcg1 == pytest.approx(0.6)
    specs = metric_specs(G, ["E"], ndcg_k=10, depth=3, mrr_k=10)
    qr = to_qrels(qrels)
    means, per = evaluate(qr, to_run(run, "r", list(qr.keys())), specs)
    assert per["nDCG@10"] == pytest.approx([dcg1 / idcg1, dcg2 / idcg2], abs=1e-9)
    assert means["nDCG@10"] == pytest.approx((dcg1 / idcg1 + dcg2 / idcg2) / 2, abs=1e-9)
    assert per["nDCG@10"][0] == pytest.approx(0.6 / (1 + 0.1 / L2(3) + 0.005), abs=1e-9)
    # Binary metrics, relevant = Exact only: q1 has 1 relevant (a, rank 3); q2 has 2 (e, f; f at rank 3).
    assert per["Recall@3"] == pytest.approx([1.0, 0.5])
    assert per["MRR@10"] == pytest.approx([1 / 3, 1 / 3])
    assert per["MAP"] == pytest.approx([1 / 3, (1 / 3) / 2])
    # The reference implementation agrees with ranx.
    assert ndcg_linear([0.1, 0.0, 1.0, 0.0], list(qrels["q1"].values()), 10) == pytest.approx(dcg1 / idcg1)


def test_relevance_level_follows_relevant_labels():
    specs = {s.name: s.ranx for s in metric_specs(G, ["E", "S"], depth=100)}
    assert specs["Recall@100"] == "recall@100-l100"  # S gain 0.1 ×1000 (reldistill.metrics.GAIN_SCALE)
    assert specs["nDCG@10"] == "ndcg@10"  # linear-gain (Järvelin) form, not ndcg_burges
    with pytest.raises(UserError, match="relevant_labels"):
        metric_specs(G, ["I"])
    with pytest.raises(UserError, match="relevant_labels"):
        metric_specs(G, ["X"])


def test_queries_missing_from_a_run_score_zero():
    qr = to_qrels({"q1": {"a": 1.0}, "q2": {"b": 1.0}})
    means, per = evaluate(qr, to_run({"q1": {"a": 1.0}}, "r", ["q1", "q2"]), metric_specs(G, ["E"]))
    assert per["nDCG@10"].tolist() == [1.0, 0.0]


@pytest.mark.slow
def test_paired_tests_match_scipy_and_flag_significance():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(0)
    control = rng.uniform(0, 1, 40)
    treatment = np.clip(control + 0.2 + rng.normal(0, 0.05, 40), 0, 1)
    t = paired_test(control, treatment, "student", max_p=0.05)
    assert t["p_value"] == pytest.approx(ttest_rel(control, treatment).pvalue, rel=1e-6)
    assert t["significant"] and t["delta"] > 0.15
    f = paired_test(control, treatment, "fisher", max_p=0.05, permutations=500)
    assert f["significant"] and 0 <= f["p_value"] < 0.05
    same = paired_test(control, control)
    assert same == {"delta": 0.0, "p_value": 1.0, "significant": False}
    sig = compare_to_baselines({"bm25": {"m": control}, "x": {"m": treatment}}, ["bm25", "dense-base"], "student", 0.05, 100)
    assert set(sig) == {"bm25"} and set(sig["bm25"]) == {"x"}


def test_eval_config_validates():
    with pytest.raises(UserError, match="stat_test"):
        EvalConfig(stat_test="wilcoxon")
    with pytest.raises(UserError, match="rerank_k_grid"):
        EvalConfig(rerank_k_grid=[500])
    with pytest.raises(UserError, match="systems"):
        EvalConfig(systems=["bm42"])
