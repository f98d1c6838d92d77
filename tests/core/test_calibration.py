"""Calibration (reldistill.calibration): monotone maps, the Platt-vs-isotonic choice, ECE/Brier, the stored file,
and thresholds that hold: two differently scaled teachers cut at one min_score keep the same precision of Exact."""

from __future__ import annotations

import numpy as np
import pytest

from reldistill.calibration import (Calibration, choose_calibrator, fit_calibration, fit_isotonic, fit_platt,
                                    load_calibration, query_folds, ranked_rows, save_calibration, summary)
from reldistill.errors import UserError
from reldistill.metrics import brier, ece_interval, expected_calibration_error, reliability


def _labels_from(p_exact: np.ndarray, rng) -> np.ndarray:
    """E with probability p_exact, else S/C/I (S twice as often as the others)."""
    u = rng.random(len(p_exact))
    rest = rng.choice(np.array(["S", "S", "C", "I"]), size=len(p_exact))
    return np.where(u < p_exact, "E", rest)


def _synthetic(n_queries: int, seed: int, per_query: int = 8):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n_queries * per_query)
    p_true = 1 / (1 + np.exp(-(2.0 * signal - 0.3)))
    labels = _labels_from(p_true, rng)
    qids = np.repeat([f"q{seed}-{i}" for i in range(n_queries)], per_query)
    return signal, p_true, labels, qids


def test_isotonic_is_monotone_and_pools_violators():
    knots, values = fit_isotonic(np.array([1, 2, 3, 4, 5.0]), np.array([0, 1, 0, 1, 1.0]))
    assert values == sorted(values) and len(knots) == len(values)
    assert values[0] == 0 and values[1] == pytest.approx(0.5) and values[-1] == 1


def test_platt_recovers_a_logistic_slope():
    rng = np.random.default_rng(0)
    z = rng.normal(size=20000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-(1.5 * z + 0.5)))).astype(float)
    a, b = fit_platt(z, y)
    assert a == pytest.approx(1.5, abs=0.1) and b == pytest.approx(0.5, abs=0.1)


def test_fitted_maps_are_monotone_and_bounded():
    s, _, labels, qids = _synthetic(200, 1)
    cal = fit_calibration(1 / (1 + np.exp(-s)), labels, qids, "logit")
    grid = np.linspace(0.001, 0.999, 500)
    for target, p in cal.probabilities(grid).items():
        assert np.all(np.diff(p) >= -1e-12), target
        assert p.min() > 0 and p.max() < 1
    pr = cal.probabilities(grid)
    assert np.all(pr["p_exact_or_substitute"] >= pr["p_exact"])
    assert cal.dev["queries"] == 200 and cal.dev["pairs"] == 1600 and set(cal.dev["labels"]) == set("ESCI")


def test_choice_platt_for_a_logistic_truth_isotonic_for_a_step():
    rng = np.random.default_rng(2)
    z = rng.normal(size=4000)
    qids = np.repeat(np.arange(500), 8).astype(str)
    logistic = (rng.random(len(z)) < 1 / (1 + np.exp(-2 * z))).astype(float)
    assert choose_calibrator(z, logistic, qids, "identity").method == "platt"
    step = np.where(z > 0.5, rng.random(len(z)) < 0.9, rng.random(len(z)) < 0.1).astype(float)  # not a sigmoid of z
    step = np.where(np.abs(z) > 1.5, 0.5 < rng.random(len(z)), step).astype(float)  # non-monotone tails break Platt
    chosen = choose_calibrator(z, step, qids, "identity")
    assert chosen.method == "isotonic" and set(chosen.dev_log_loss) == {"platt", "isotonic"}


def _mixed(seed: int, ranked_shift: float):
    """400 ranked queries of 6 pairs (P(E) = sigmoid(2z + ranked_shift)) and 800 single-judged ones (sigmoid(2z + 1.5))."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=400 * 6 + 800)
    shift = np.r_[np.full(400 * 6, ranked_shift), np.full(800, 1.5)]
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-(2 * z + shift)))).astype(float)
    qids = np.r_[np.repeat([f"r{i}" for i in range(400)], 6), [f"s{i}" for i in range(800)]]
    return z, y, qids


def test_fit_set_follows_the_ranked_queries_when_single_judged_ones_differ():
    z, y, qids = _mixed(5, -1.0)  # single-judged queries are Exact far more often at the same score
    cal = choose_calibrator(z, y, qids, "identity")
    assert cal.fit_pairs == "ranked" and cal.fitted == {"queries": 400, "pairs": 2400}
    assert set(cal.dev_log_loss) == {"platt", "isotonic", "platt (ranked)", "isotonic (ranked)"}
    ranked = ranked_rows(qids)
    p = cal(z[ranked], "identity")
    assert abs(p.mean() - y[ranked].mean()) < 0.02  # calibrated where it is judged: the ranked queries
    assert cal.dev_log_loss["platt"] - cal.dev_log_loss["platt (ranked)"] > cal.dev_log_loss_se["platt"] > 0  # won by more than its SE
    same = choose_calibrator(*_mixed(6, 1.5), "identity")  # one relation for both: the simplest map on every pair
    assert (same.method, same.fit_pairs) == ("platt", "all")
    whole = choose_calibrator(z[ranked], y[ranked], qids[ranked], "identity")  # only ranked queries: one fit set
    assert whole.fit_pairs == "all" and set(whole.dev_log_loss) == {"platt", "isotonic"}


def test_a_lower_loss_within_one_standard_error_keeps_the_simplest_map():
    """One relation for all queries; by chance isotonic on the ranked queries has the lowest out-of-fold loss, by less
    than its paired standard error over queries: Platt on every dev pair is kept (the lowest alone flips with the draw)."""
    cal = choose_calibrator(*_mixed(8, 1.5), "identity")
    lowest = min(cal.dev_log_loss, key=cal.dev_log_loss.get)
    assert lowest == "isotonic (ranked)" and cal.dev_log_loss_se[lowest] == 0
    assert 0 < cal.dev_log_loss["platt"] - cal.dev_log_loss[lowest] <= cal.dev_log_loss_se["platt"]
    assert (cal.method, cal.fit_pairs, cal.fitted["pairs"]) == ("platt", "all", 400 * 6 + 800)


def test_query_folds_keep_queries_whole_and_share_ranked_ones():
    _, _, qids = _mixed(7, 0.0)
    fold = query_folds(qids, 5, seed=0)
    for q in np.unique(qids):
        assert len(set(fold[qids == q])) == 1
    ranked = ranked_rows(qids)
    per_fold = [len(set(qids[ranked & (fold == f)])) for f in range(5)]
    assert per_fold == [80] * 5 and [len(set(qids[~ranked & (fold == f)])) for f in range(5)] == [160] * 5


def test_summary_names_each_targets_fit_set():
    z, y, qids = _mixed(8, -1.0)
    labels = np.where(y > 0, "E", "I")
    fitted = summary(fit_calibration(z, labels, qids, "identity"))["fitted_on"]
    assert fitted["p_exact"] == {"set": "ranked", "queries": 400, "pairs": 2400}
    assert set(fitted) == {"p_exact", "p_exact_or_substitute"}


def test_ece_and_brier_on_synthetic_data():
    rng = np.random.default_rng(3)
    p = rng.random(50000)
    y = (rng.random(len(p)) < p).astype(float)
    assert expected_calibration_error(p, y) < 0.01
    assert expected_calibration_error(np.clip(p + 0.2, 0, 1), y) > 0.12
    assert brier(p, y) == pytest.approx(1 / 6, abs=0.01)  # E[p(1-p)] for uniform p
    table = reliability(p, y, 10)
    assert len(table) == 10 and sum(r["count"] for r in table) == len(p)


def test_calibration_lowers_ece_of_a_miscalibrated_score():
    s, _, labels, qids = _synthetic(400, 4)
    raw = 1 / (1 + np.exp(-(0.4 * s + 1.0)))  # squashed and shifted: not P(Exact)
    y = (labels == "E").astype(float)
    dev, test = slice(0, 1600), slice(1600, None)
    cal = fit_calibration(raw[dev], labels[dev], qids[dev], "logit")
    assert expected_calibration_error(cal.p_exact(raw[test]), y[test]) < 0.05 < expected_calibration_error(raw[test], y[test])


def test_two_teachers_one_threshold_same_precision():
    """The point of calibration: differently scaled models cut at the same probability keep the same precision."""
    s, _, labels, qids = _synthetic(1500, 5)
    rng = np.random.default_rng(6)
    # as two seeds give: a similar ranking (the same signal, their own noise), scores on another scale and offset
    teachers = {"sharp": 1 / (1 + np.exp(-3.0 * (s + rng.normal(0, 0.25, len(s))))),
                "flat": 1 / (1 + np.exp(-(0.5 * (s + rng.normal(0, 0.25, len(s))) + 2.0)))}
    dev, test = slice(0, 6000), slice(6000, None)
    exact = labels[test] == "E"
    for min_score in (0.5, 0.7):
        precision, raw_precision = {}, {}
        for name, score in teachers.items():
            cal = fit_calibration(score[dev], labels[dev], qids[dev], "logit")
            keep = cal.p_exact(score[test]) >= min_score
            precision[name] = exact[keep].mean()
            raw_precision[name] = exact[score[test] >= min_score].mean()
        assert abs(precision["sharp"] - precision["flat"]) <= 0.05, precision
        assert precision["sharp"] >= min_score - 0.05
    assert abs(raw_precision["sharp"] - raw_precision["flat"]) > 0.05  # the raw scores do not agree


def test_saved_file_round_trips_and_bad_files_are_user_errors(tmp_path):
    s, _, labels, qids = _synthetic(50, 7)
    cal = fit_calibration(s, labels, qids, "identity", score="cosine", split="dev")
    save_calibration(tmp_path, cal)
    back = load_calibration(tmp_path)
    assert isinstance(back, Calibration) and back.dev["split"] == "dev"
    assert np.allclose(back.p_exact(s), cal.p_exact(s))
    assert load_calibration(tmp_path / "nothing") is None
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(UserError, match="calibration.json"):
        load_calibration(tmp_path)
    (tmp_path / "calibration.json").write_text('{"transform": "cube", "targets": {}}')
    with pytest.raises(UserError, match="reldistill calibrate"):
        load_calibration(tmp_path)
    with pytest.raises(UserError, match="at least 2 queries"):
        fit_calibration([0.1] * 20, ["E"] * 20, ["q"] * 20, "logit")


def _query_effects(n_queries: int, seed: int, shift: float = 0.0, per_query: int = 20):
    """Pairs whose Exact rate is ``p`` plus their query's own offset (±0.3: ESCI's lists differ in how many Exact they
    hold), so ``p`` is calibrated over many queries but not within one; the map returns ``p + shift``."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.35, 0.65, n_queries * per_query)
    rate = p + np.repeat(rng.uniform(-0.3, 0.3, n_queries), per_query)
    y = (rng.random(len(rate)) < rate).astype(float)
    return p + shift, y, np.repeat([f"q{i}" for i in range(n_queries)], per_query)


def test_ece_interval_resamples_whole_queries_and_brackets_the_error():
    p, y, q = _query_effects(130, 0)
    lo, hi = ece_interval(p, y, q)
    assert lo <= expected_calibration_error(p, y) <= hi and hi < 0.1  # calibrated: small, and the point inside
    assert ece_interval(p, y, q) == (lo, hi) and ece_interval(p, y, q, seed=1) != (lo, hi)  # seeded
    # pairs of one query share its offset: resampling pairs (each its own group) would claim a far narrower interval
    off, y_off, _ = _query_effects(130, 0, shift=0.1)
    (q_lo, q_hi), (p_lo, p_hi) = ece_interval(off, y_off, q), ece_interval(off, y_off, np.arange(len(off)))
    assert q_hi - q_lo > 1.4 * (p_hi - p_lo)
    # the interval narrows as queries are added, and a map off by +0.2 is told apart from a calibrated one
    w_lo, w_hi = ece_interval(*_query_effects(1300, 0))
    assert w_hi - w_lo < 0.5 * (hi - lo)
    off_lo, _ = ece_interval(*_query_effects(130, 0, shift=0.2))
    assert off_lo > 0.15 > hi
    assert ece_interval(p[:20], y[:20], q[:20]) is None  # one query: no interval


def test_eval_block_report_table_and_reliability_diagram(tmp_path):
    from reldistill.eval.calibration import calibration_block, precision_at
    from reldistill.eval.plots import plot_reliability
    from reldistill.eval.report import calibration_markdown

    s, _, labels, qids = _synthetic(600, 8)
    raw = 1 / (1 + np.exp(-(0.4 * s + 1.0)))
    cal = fit_calibration(raw[:2400], labels[:2400], qids[:2400], "logit", split="dev")
    block = calibration_block(cal, raw[2400:], labels[2400:], raw_is_probability=True, query_ids=qids[2400:])
    assert block["pairs"] == 2400 and block["p_exact"]["ece"] < 0.05 < block["p_exact"]["raw_ece"]
    assert sum(r["count"] for r in block["p_exact"]["reliability"]) == 2400
    tasks = block["esci_tasks"]
    exact = labels[2400:] == "E"
    assert 0 < tasks["task2_micro_f1"] <= 1 and tasks["predicted"]["E"] > 0 and 0 <= tasks["task3_substitute_f1"] <= 1
    kept = precision_at(cal, raw[2400:], labels[2400:], 0.6)
    assert kept["kept"] > 0 and kept["precision_exact"] == pytest.approx(exact[cal.p_exact(raw[2400:]) >= 0.6].mean())
    report = {"split": "test", "calibration": {"teacher": block, "dense-distilled": {**block, "served_student": True}}}
    md = "\n".join(calibration_markdown(report))
    assert "dense-distilled (served student)" in md and f"{block['p_exact']['ece']:.4f}" in md and "Task 2 micro-F1" in md
    assert f"on 2,400 dev pairs of 300 queries" in md  # every dev query ranks 8 pairs: one fit set
    lo, hi = block["p_exact"]["ece_ci"]
    assert lo <= block["p_exact"]["ece"] <= hi and block["interval"]["queries"] == 300
    assert f"{block['p_exact']['ece']:.4f} [{lo:.3f}, {hi:.3f}]" in md and "95% interval" in md and "300 queries" in md
    assert "ece_ci" not in calibration_block(cal, raw[2400:], labels[2400:], True)["p_exact"]  # no query ids, no interval
    z, y, mq = _mixed(9, -1.0)
    mixed = fit_calibration(z, np.where(y > 0, "E", "I"), mq, "identity", split="dev")
    ranked_block = calibration_block(mixed, z[:600], np.where(y[:600] > 0, "E", "I"), raw_is_probability=False)
    assert "on 2,400 dev pairs of 400 ranked queries" in "\n".join(calibration_markdown({"split": "test", "calibration": {"x": ranked_block}}))
    png = plot_reliability(report, tmp_path / "reliability.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_platt_never_turns_a_backwards_score_upside_down():
    """A score that anti-correlates with the labels on dev gets a flat map (the base rate), never a falling one."""
    from reldistill.calibration import fit_platt

    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    y = (z < 0).astype(float)  # higher score, less relevant
    a, b = fit_platt(z, y)
    assert a == 0.0 and abs(1 / (1 + np.exp(-b)) - y.mean()) < 0.02
