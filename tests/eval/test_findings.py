"""Report findings follow the measured numbers: distilled vs base/human, teacher vs BM25, rerank vs none."""

from __future__ import annotations

from reldistill.eval.findings import findings


def report(dist: float, teacher: float, rerank: float, significant: bool = True) -> dict:
    sysm = {"bm25": 0.43, "dense-base": 0.45, "dense-human": 0.50, "dense-distilled": dist,
            "hybrid-distilled": 0.49, "hybrid-distilled+rerank": rerank}
    return {
        "metrics": ["nDCG@10", "MAP"], "task1_metrics": ["nDCG@10"],
        "systems": {s: {"nDCG@10": v, "MAP": v / 2} for s, v in sysm.items()},
        "task1": {"bm25": {"nDCG@10": 0.54}, "teacher": {"nDCG@10": teacher}},
        "significance": {"retrieval": {"dense-base": {"dense-distilled": {"nDCG@10": {
            "delta": dist - 0.45, "p_value": 0.002 if significant else 0.4, "significant": significant}}}}},
    }


def test_a_weak_teacher_is_called_out_and_its_rerank_flagged():
    out = " ".join(findings(report(dist=0.51, teacher=0.45, rerank=0.40)))
    assert "beats its base model on nDCG@10: 0.5100 vs 0.4500 (+0.0600, p = 0.002)" in out
    assert "0.5100 vs 0.5000 (+0.0100)" in out  # vs the human-labels-only student
    assert "no better than BM25 (ESCI Task 1 nDCG@10 0.4500 vs 0.5400)" in out
    assert "Teacher reranking lowers nDCG@10 (0.4000 vs 0.4900 without)" in out
    assert "until the teacher beats BM25 on Task 1" in out


def test_a_teacher_good_on_task1_whose_rerank_still_loses_is_not_told_to_beat_bm25():
    out = " ".join(findings(report(dist=0.51, teacher=0.60, rerank=0.45)))
    assert "Teacher reranking lowers nDCG@10 (0.4500 vs 0.4900 without)" in out
    assert "beats BM25" not in out and "better than it orders the fused top-k" in out


def test_a_good_teacher_raises_no_teacher_warning_and_a_loss_is_not_hidden():
    good = findings(report(dist=0.55, teacher=0.62, rerank=0.53))
    assert not any("BM25" in f or "reranking" in f for f in good)
    worse = " ".join(findings(report(dist=0.44, teacher=0.62, rerank=0.53, significant=False)))
    assert "does NOT beat its base model on nDCG@10: 0.4400 vs 0.4500, p = 0.4" in worse
    small = " ".join(findings(report(dist=0.46, teacher=0.62, rerank=0.53, significant=False)))
    assert "not significant" in small


def test_absent_systems_give_no_findings():
    r = report(dist=0.5, teacher=0.5, rerank=0.5)
    r["systems"] = {"bm25": {"nDCG@10": 0.4, "MAP": 0.2}}
    r["task1"] = {"bm25": {"nDCG@10": 0.54}}
    assert findings(r) == []


def test_a_teacher_above_bm25_but_below_the_base_student_is_called_out():
    r = report(dist=0.51, teacher=0.60, rerank=0.53)
    r["task1"]["dense-base"] = {"nDCG@10": 0.62}
    out = " ".join(findings(r))
    assert "above BM25 but below the base student it teaches (ESCI Task 1 nDCG@10 0.6000 vs 0.6200; BM25 0.5400)" in out
    assert "no better than BM25" not in out
    r["task1"]["dense-base"] = {"nDCG@10": 0.58}  # above both: no teacher warning
    assert not any("teacher ranks" in f.lower() for f in findings(r))
    r["task1"]["teacher"] = {"nDCG@10": 0.50}  # below both: the BM25 warning alone
    out = " ".join(findings(r))
    assert "no better than BM25" in out and "below the base student" not in out


def test_the_students_table_shows_what_each_trained_student_saw_and_skips_base_models():
    from reldistill.eval.report import students_markdown

    seen = {"labels": "teacher", "pairs": 8048, "queries": 490, "steps": 110, "rows_seen": 3520}
    rows = students_markdown({"details": {"students": {"dense-base": {"trained": None}, "dense-distilled": {"trained": seen}}}})
    assert "| dense-distilled | teacher | 8,048 | 490 | 110 | 3,520 |" in rows
    assert not any(r.startswith("| dense-base") for r in rows)
    assert students_markdown({"details": {"students": {"dense-base": {"trained": None}}}}) == []
    assert students_markdown({}) == []  # a report written before the table existed
