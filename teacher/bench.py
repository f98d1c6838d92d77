"""Scoring speed of one teacher in several dtypes on the same pairs (fp32 vs bf16), in one run."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def compare_dtypes(teacher_dir, queries: Sequence[str], texts: Sequence[str], dtypes: Sequence[str] = ("float32", "bfloat16"),
                   batch_size: int | None = None, progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Load the teacher once per dtype, score every pair, time it (load excluded).

    Returns one row per dtype (pairs, seconds, pairs_per_s, and for the others max/mean |Δscore|
    and Spearman correlation vs the first dtype) and the logits per dtype.
    """
    from scipy.stats import spearmanr

    from reldistill.teacher.teacher import Teacher

    from reldistill.teacher.backbone import set_cpu_threads

    threads = set_cpu_threads("auto")
    rows, scores = [], {}
    for dt in dtypes:
        t_load = time.monotonic()
        teacher = Teacher.load(teacher_dir, dtype=dt, int8="off")  # dtypes as named
        load_s = time.monotonic() - t_load
        t0 = time.monotonic()
        logits = teacher.score_logits(list(queries), list(texts), batch_size=batch_size, progress=progress, memo=False, prior=False)
        secs = time.monotonic() - t0
        scores[dt] = logits
        s = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
        row = {"dtype": str(teacher.dtype).removeprefix("torch."), "pairs": len(s), "seconds": round(secs, 2),
               "pairs_per_s": round(len(s) / secs, 2) if secs > 0 else None, "load_seconds": round(load_s, 2),
               "cpu_threads": threads, "load_avg_1m": round(os.getloadavg()[0], 2)}
        ref = 1.0 / (1.0 + np.exp(-scores[dtypes[0]].astype(np.float64)))
        if dt != dtypes[0]:
            d = np.abs(s.astype(np.float64) - ref)
            row.update(max_abs_diff=float(d.max()), mean_abs_diff=float(d.mean()),
                       spearman_vs_first=float(spearmanr(s, ref).statistic) if len(s) > 2 else None)
        rows.append(row)
        del teacher
    return rows, scores
