"""Scoring speed of one teacher in several dtypes on the same pairs (fp32 vs bf16), in one run."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def compare_dtypes(teacher_dir, queries: Sequence[str], texts: Sequence[str], dtypes: Sequence[str] = ("float32", "bfloat16"),
                   batch_size: int | None = None, progress: bool = True, *,
                   runtime=None) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Load the teacher once per dtype (on ``runtime``, a ``reldistill.settings.Runtime``), score every pair, time it
    (load excluded).

    Returns one row per dtype (pairs, seconds, pairs_per_s, and for the others max/mean |Δscore|
    and Spearman correlation vs the first dtype) and the logits per dtype.
    """
    from scipy.stats import spearmanr

    from reldistill.teacher.teacher import Teacher

    from reldistill.teacher.backbone import set_cpu_threads

    threads = set_cpu_threads("auto", runtime)
    rows, scores = [], {}
    for dt in dtypes:
        t_load = time.monotonic()
        teacher = Teacher.load(teacher_dir, dtype=dt, int8="off", runtime=runtime)  # dtypes as named
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


def prefix_check(teacher, queries: Sequence[str], texts: Sequence[str], batch_size: int | None = None,
                 rounds: int = 2) -> dict[str, Any]:
    """pairs/s of the full forward vs the shared-prefix path (reldistill.teacher.prefix_kv) on the same pairs, in
    alternating rounds (a shared machine's load hits both alike), the Spearman / max |Δ| of their logits, and
    the tokens the prefix path runs (padding included) against the pairs' tokens."""
    from scipy.stats import spearmanr

    from reldistill.teacher.prefix_kv import MIN_GROUP, common_prefix, plan
    from reldistill.teacher.teacher import running_with

    queries, texts = list(queries), list(texts)
    rates: dict[str, list[float]] = {"full": [], "prefix": []}
    logits: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, on in (("full", False), ("prefix", True)):
            with running_with(teacher, teacher_prefix_kv=on):
                teacher.score_logits(queries[:4], texts[:4], batch_size=batch_size, memo=False)  # warm-up
                t0 = time.perf_counter()
                logits[name] = teacher.score_logits(queries, texts, batch_size=batch_size, memo=False)
                rates[name].append(len(queries) / (time.perf_counter() - t0))
    full, fast = float(np.median(rates["full"])), float(np.median(rates["prefix"]))
    ids = teacher.encoder.encode(queries, texts)
    parts = plan(ids, queries, batch_size or teacher.batch_size)
    run = sum(p + sum(len(b) * max(len(ids[i]) - p for i in b) for b in batches) for p, batches in parts)
    return {"pairs": len(queries), "shared_prefix_tokens": common_prefix(ids), "parts": len(parts), "min_group": MIN_GROUP,
            "tokens": sum(map(len, ids)), "tokens_run": int(run),  # with padding, prefixes once
            "full_pairs_per_s": full, "prefix_pairs_per_s": fast, "speedup": fast / full,
            "spearman": float(spearmanr(logits["full"], logits["prefix"]).statistic) if len(queries) > 2 else None,
            "max_abs_logit_diff": float(np.max(np.abs(logits["full"] - logits["prefix"])))}
