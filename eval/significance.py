"""Paired significance tests of per-query metric scores (ranx's paired t-test or Fisher randomization)."""

from __future__ import annotations

import math

import numpy as np


def paired_test(control: np.ndarray, treatment: np.ndarray, test: str = "student", max_p: float = 0.05,
                permutations: int = 1000, seed: int = 42) -> dict[str, float | bool]:
    """Two-sided paired test of ``treatment`` vs ``control`` (same queries, same order).

    Returns ``delta`` (mean treatment − mean control), ``p_value`` and ``significant`` (p < max_p).
    Identical score vectors give p = 1 (the t statistic is undefined there).
    """
    from ranx.statistical_tests import fisher_randomization_test, paired_student_t_test

    c = np.asarray(control, dtype=np.float64)
    t = np.asarray(treatment, dtype=np.float64)
    if c.shape != t.shape:
        raise ValueError(f"paired test needs score vectors of one length, got {c.shape} and {t.shape}")
    delta = float(t.mean() - c.mean()) if len(c) else float("nan")
    if len(c) < 2 or np.allclose(c, t):
        p = 1.0
    elif test == "fisher":
        p, _ = fisher_randomization_test(c, t, permutations, max_p, seed)
    else:
        p, _ = paired_student_t_test(c, t, max_p)
    p = float(p)
    if math.isnan(p):
        p = 1.0
    return {"delta": delta, "p_value": p, "significant": bool(p < max_p)}


def compare_to_baselines(per_query: dict[str, dict[str, np.ndarray]], baselines: list[str], test: str,
                         max_p: float, permutations: int) -> dict[str, dict[str, dict[str, dict]]]:
    """{baseline: {system: {metric: paired_test(...)}}} for every system present other than the baseline."""
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for base in baselines:
        if base not in per_query:
            continue
        out[base] = {}
        for system, metrics in per_query.items():
            if system == base:
                continue
            out[base][system] = {m: paired_test(per_query[base][m], scores, test, max_p, permutations)
                                 for m, scores in metrics.items()}
    return out
