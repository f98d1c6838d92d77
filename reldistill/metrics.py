"""The one home of ranking metrics: graded nDCG, Recall, MRR and MAP over ESCI gains (ranx underneath).

ranx stores relevance as integers, so gains (E=1, S=0.1, C=0.01, I=0 by default) are scaled by ONE
factor, ``GAIN_SCALE``, before they reach it. nDCG is the Järvelin & Kekäläinen form with *linear*
gains, DCG = Σ gain_i / log2(i + 1), which is invariant to that scaling, so every caller — teacher
dev eval, student dev eval and `reldistill eval` — reports nDCG on the raw ESCI gains (the official
ESCI Task-1 metric). Binary metrics use ranx's relevance level ``-l<N>`` on the scaled gains.

Calibration metrics live here too: expected calibration error (equal-width bins) and its bootstrap interval
over queries, Brier score and the reliability table a reliability diagram draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

GAIN_SCALE = 1000  # 1 / 0.1 / 0.01 → 1000 / 100 / 10: exact integers for the ESCI gains


def scaled_gain(gain: float) -> int:
    """A gain → the integer relevance ranx stores."""
    return int(round(float(gain) * GAIN_SCALE))


def to_qrels(qrels: Mapping[str, Mapping[str, float]]):
    """{query_id: {product_id: gain}} → ranx.Qrels with scaled integer gains."""
    from ranx import Qrels

    return Qrels.from_dict({str(q): {str(p): scaled_gain(g) for p, g in docs.items()} for q, docs in qrels.items()})


def to_run(run: Mapping[str, Mapping[str, float]], name: str, query_ids: Sequence[str]):
    """{query_id: {product_id: score}} → ranx.Run holding every query of ``query_ids`` (missing → empty)."""
    from ranx import Run

    full = {str(q): {str(p): float(s) for p, s in (run.get(q) or {}).items()} for q in query_ids}
    return Run.from_dict(full, name=name)


def evaluate(qrels, run, metrics: Sequence[str]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(mean, per-query array) of each ranx metric string for ``run`` (a ranx.Run) against ``qrels`` (a ranx.Qrels).

    Per-query arrays follow ``qrels.keys()`` order, so arrays of two runs on the same qrels pair up;
    a query missing from the run scores 0.
    """
    from ranx import evaluate as rx_evaluate

    run = run.make_comparable(qrels)
    names = list(metrics)
    # ranx returns a bare array for one metric and, with save_results_in_run=False, fails to look it up
    # ('ndcg@10' → KeyError 'ndcg'): ask for it twice to get the dict form
    per = rx_evaluate(qrels, run, names * 2 if len(names) == 1 else names, return_mean=False, save_results_in_run=False)
    order, want = list(run.keys()), list(qrels.keys())
    idx = [order.index(q) for q in want] if order != want else None
    means, out = {}, {}
    for m in metrics:
        arr = np.asarray(per[m], dtype=np.float64)
        out[m] = arr[idx] if idx is not None else arr
        means[m] = float(out[m].mean()) if len(arr) else float("nan")
    return means, out


def mean_metrics(qrels: Mapping[str, Mapping[str, float]], run: Mapping[str, Mapping[str, float]],
                 metrics: Sequence[str]) -> dict[str, float]:
    """Means of ``metrics`` for plain dicts ({query: {product: gain}}, {query: {product: score}}), over qrels' queries."""
    qr = to_qrels(qrels)
    return evaluate(qr, to_run(run, "run", list(qr.keys())), metrics)[0]


def ndcg_of_scores(scores: Sequence[float], gains: Sequence[float], k: int | None = None) -> float | None:
    """nDCG@k of one query's candidates ranked by ``scores`` (linear gains, log2 discount); None without a positive gain.

    Ties are broken pessimistically (lowest gain first) so a constant scorer earns no credit; without
    ties this equals ranx's ``ndcg@k`` on the same candidates.
    """
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(gains, dtype=np.float64)
    n = len(g) if k is None else min(k, len(g))
    ideal = np.sort(g)[::-1][:n]
    disc = 1.0 / np.log2(np.arange(2, n + 2))
    idcg = float(ideal @ disc)
    if idcg <= 0:
        return None
    order = np.lexsort((g, -s))[:n]  # by score desc, then gain asc
    return float(g[order] @ disc / idcg)


def _bin_of(p: np.ndarray, bins: int) -> np.ndarray:
    """Each probability's equal-width bin, 0 .. ``bins`` - 1 (1.0 falls in the top one)."""
    return np.minimum((p * bins).astype(int), bins - 1)


def reliability(p: Sequence[float], y: Sequence[float], bins: int = 10) -> list[dict[str, float]]:
    """Equal-width bins of predicted probability: each non-empty bin's count, mean prediction and observed rate."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    idx = _bin_of(p, bins)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": int(m.sum()),
                        "mean_p": float(p[m].mean()), "rate": float(y[m].mean())})
    return out


def expected_calibration_error(p: Sequence[float], y: Sequence[float], bins: int = 10) -> float:
    """ECE: the count-weighted mean |mean prediction − observed rate| over equal-width bins."""
    n = len(p)
    return float(sum(r["count"] * abs(r["mean_p"] - r["rate"]) for r in reliability(p, y, bins)) / n) if n else float("nan")


def ece_interval(p: Sequence[float], y: Sequence[float], groups: Sequence[str], bins: int = 10, level: float = 0.95,
                 resamples: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of :func:`expected_calibration_error` that resamples whole ``groups`` (queries).

    A query's pairs share its difficulty, so resampling pairs would understate the spread. Per bin,
    count · |mean prediction − rate| = |Σp − Σy|, so each resample's ECE is Σ_bins |Σp − Σy| / n over the drawn
    queries' per-bin sums. None for fewer than 2 groups."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _, g = np.unique(np.asarray([str(x) for x in groups]), return_inverse=True)
    n_groups = int(g.max()) + 1 if len(g) else 0
    if n_groups < 2:
        return None
    cell = g * bins + _bin_of(p, bins)
    sums = [np.bincount(cell, weights=w, minlength=n_groups * bins).reshape(n_groups, bins) for w in (np.ones_like(p), p, y)]
    drawn = np.random.default_rng(seed).multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=resamples)
    count, sum_p, sum_y = (drawn @ s for s in sums)  # (resamples, bins): each query counted as often as it was drawn
    ece = np.abs(sum_p - sum_y).sum(axis=1) / count.sum(axis=1)
    lo, hi = np.percentile(ece, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def brier(p: Sequence[float], y: Sequence[float]) -> float:
    """Mean squared error of probabilities against 0/1 outcomes."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")
