"""Calibration on the report split: how well each calibrated model's P(Exact) and P(Exact or Substitute) hold.

For the teacher and each calibrated student, on the split's judged pairs (the Task 1 scores eval already
has): expected calibration error (10 equal-width bins) with its 95 % bootstrap interval over the split's
queries (a split of ~130 queries moves ECE by a few hundredths: the interval says how far), Brier score, the
reliability table the diagram draws, and the same figures for the raw score where it is a probability (the teacher's sigmoid), so the
report shows what calibration changed. The models are fitted on dev (reldistill.calibration), never here.

ESCI Task 2 (E/S/C/I) and Task 3 (substitute or not) are answered from the two probabilities alone —
P(E), P(S) = P(E or S) − P(E), P(C or I) = 1 − P(E or S), the most probable class, C or I reported as I
(the teacher has no 4-way class head: docs/teacher-class-head.md measured one on dev, and it did not beat these maps): micro-F1 (which is accuracy for one label per pair) and the
Substitute class's F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reldistill.calibration import TARGETS, Calibration, summary
from reldistill.metrics import brier, ece_interval, expected_calibration_error, reliability

BINS = 10
INTERVAL = {"method": "percentile bootstrap", "unit": "query", "level": 0.95, "resamples": 1000, "seed": 0}  # what ece_interval is given


def calibration_block(cal: Calibration, scores: np.ndarray, labels: np.ndarray, raw_is_probability: bool,
                      query_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """ECE, Brier and reliability of ``cal`` on raw ``scores`` against ESCI ``labels`` (E/S/C/I) of the report split;
    with the pairs' ``query_ids``, each ECE's interval too (``ece_ci``, :data:`INTERVAL`)."""
    labels = np.asarray([str(x) for x in labels])
    probs = cal.probabilities(np.asarray(scores, dtype=np.float64))
    out: dict[str, Any] = {"pairs": int(len(labels)), "bins": BINS, "fitted": summary(cal)}
    for target, positive in TARGETS.items():
        y = np.isin(labels, positive).astype(np.float64)
        p = probs[target]
        row = {"ece": expected_calibration_error(p, y, BINS), "brier": brier(p, y), "base_rate": float(y.mean()) if len(y) else None,
               "reliability": reliability(p, y, BINS)}
        interval = ece_interval(p, y, query_ids, BINS, INTERVAL["level"], INTERVAL["resamples"], INTERVAL["seed"]) if query_ids is not None else None
        if interval:
            row["ece_ci"], out["interval"] = list(interval), {**INTERVAL, "queries": len(set(map(str, query_ids)))}
        if raw_is_probability:
            raw = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
            row.update(raw_ece=expected_calibration_error(raw, y, BINS), raw_brier=brier(raw, y))
        out[target] = row
    out["esci_tasks"] = esci_tasks(probs["p_exact"], probs["p_exact_or_substitute"], labels)
    return out


def esci_tasks(p_exact: np.ndarray, p_exact_or_sub: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Task 2 micro-F1 and Task 3 (substitute vs not) micro-F1 and Substitute F1 from the calibrated probabilities."""
    labels = np.asarray([str(x) for x in labels])
    if not len(labels):
        return {}
    classes = np.array(["E", "S", "I"])
    pred = classes[np.argmax(np.stack([p_exact, p_exact_or_sub - p_exact, 1.0 - p_exact_or_sub]), axis=0)]
    return {**esci_task_scores(pred, labels), "predicted": {c: int((pred == c).sum()) for c in classes},
            "how": "argmax of P(E), P(S) = P(E or S) - P(E), P(C or I) = 1 - P(E or S); C or I counted as I (no class head)"}


def esci_task_scores(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Task 2 micro-F1, Task 3 (substitute vs not) micro-F1 and Substitute F1 of predicted ESCI classes ``pred``."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    sub_true, sub_pred = labels == "S", pred == "S"
    tp = float((sub_true & sub_pred).sum())
    f1_s = 2 * tp / (sub_true.sum() + sub_pred.sum()) if sub_true.sum() + sub_pred.sum() else 0.0
    return {"task2_micro_f1": float((pred == labels).mean()), "task3_micro_f1": float((sub_true == sub_pred).mean()),
            "task3_substitute_f1": float(f1_s)}


def precision_at(cal: Calibration, scores: np.ndarray, labels: np.ndarray, min_score: float) -> dict[str, Any]:
    """Kept pairs and precision of Exact among the pairs whose calibrated P(Exact) is at least ``min_score``."""
    keep = cal.p_exact(np.asarray(scores, dtype=np.float64)) >= min_score
    exact = np.asarray([str(x) for x in labels]) == "E"
    return {"min_score": min_score, "kept": int(keep.sum()), "precision_exact": float(exact[keep].mean()) if keep.any() else None}
