"""Calibration on the report split: how well each calibrated model's P(Exact) and P(Exact or Substitute) hold.

For the teacher and each calibrated student, on the split's judged pairs (the Task 1 scores eval already
has): expected calibration error (10 equal-width bins), Brier score, the reliability table the diagram
draws, and the same figures for the raw score where it is a probability (the teacher's sigmoid), so the
report shows what calibration changed. The models are fitted on dev (reldistill.calibration), never here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reldistill.calibration import TARGETS, Calibration, summary
from reldistill.metrics import brier, expected_calibration_error, reliability

BINS = 10


def calibration_block(cal: Calibration, scores: np.ndarray, labels: np.ndarray, raw_is_probability: bool) -> dict[str, Any]:
    """ECE, Brier and reliability of ``cal`` on raw ``scores`` against ESCI ``labels`` (E/S/C/I) of the report split."""
    labels = np.asarray([str(x) for x in labels])
    probs = cal.probabilities(np.asarray(scores, dtype=np.float64))
    out: dict[str, Any] = {"pairs": int(len(labels)), "bins": BINS, "fitted": summary(cal)}
    for target, positive in TARGETS.items():
        y = np.isin(labels, positive).astype(np.float64)
        p = probs[target]
        row = {"ece": expected_calibration_error(p, y, BINS), "brier": brier(p, y), "base_rate": float(y.mean()) if len(y) else None,
               "reliability": reliability(p, y, BINS)}
        if raw_is_probability:
            raw = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
            row.update(raw_ece=expected_calibration_error(raw, y, BINS), raw_brier=brier(raw, y))
        out[target] = row
    return out


def precision_at(cal: Calibration, scores: np.ndarray, labels: np.ndarray, min_score: float) -> dict[str, Any]:
    """Kept pairs and precision of Exact among the pairs whose calibrated P(Exact) is at least ``min_score``."""
    keep = cal.p_exact(np.asarray(scores, dtype=np.float64)) >= min_score
    exact = np.asarray([str(x) for x in labels]) == "E"
    return {"min_score": min_score, "kept": int(keep.sum()), "precision_exact": float(exact[keep].mean()) if keep.any() else None}
