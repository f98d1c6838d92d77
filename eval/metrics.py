"""IR metrics through ranx with ESCI graded gains.

ranx stores relevance judgements as integers, so the ESCI gains (E=1, S=0.1, C=0.01, I=0) are
scaled by ``GAIN_SCALE`` (→ 100/10/1/0) before they reach ranx. nDCG uses ranx's ``ndcg`` — the
Järvelin & Kekäläinen form with *linear* gains, DCG = Σ gain_i / log2(i + 1) — which is invariant to
that scaling, so the values equal nDCG on the raw ESCI gains (the official ESCI Task-1 metric).
Binary metrics (Recall, MRR, MAP) use ranx's relevance level ``-l<N>``: a product counts as relevant
when its scaled gain is at least that of the lowest ``relevant_labels`` label (default: Exact only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

GAIN_SCALE = 100


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """A reported metric: its display name and the ranx metric string that computes it."""

    name: str
    ranx: str


def metric_specs(gains: Mapping[str, float], relevant_labels: Sequence[str], ndcg_k: int = 10,
                 depth: int = 100, mrr_k: int = 10) -> list[MetricSpec]:
    """nDCG@k (graded), Recall@depth, MRR@k and MAP (binary, relevant = ``relevant_labels``)."""
    unknown = [lab for lab in relevant_labels if lab not in gains]
    if unknown:
        from reldistill.errors import UserError

        raise UserError(f"eval.relevant_labels names {unknown[0]!r}, which is not a label of data.gains ({', '.join(gains)}).")
    level = min(scaled_gain(gains[lab]) for lab in relevant_labels)
    if level < 1:
        from reldistill.errors import UserError

        raise UserError("eval.relevant_labels must name labels with a gain above 0 (e.g. [E] or [E, S]).")
    return [
        MetricSpec(f"nDCG@{ndcg_k}", f"ndcg@{ndcg_k}"),
        MetricSpec(f"Recall@{depth}", f"recall@{depth}-l{level}"),
        MetricSpec(f"MRR@{mrr_k}", f"mrr@{mrr_k}-l{level}"),
        MetricSpec("MAP", f"map-l{level}"),
    ]


def scaled_gain(gain: float) -> int:
    """ESCI gain → the integer relevance ranx stores (×100, rounded)."""
    return int(round(float(gain) * GAIN_SCALE))


def to_qrels(qrels: Mapping[str, Mapping[str, float]]):
    """{query_id: {product_id: gain}} → ranx.Qrels with gains ×100 as integers."""
    from ranx import Qrels

    return Qrels.from_dict({str(q): {str(p): scaled_gain(g) for p, g in docs.items()} for q, docs in qrels.items()})


def to_run(run: Mapping[str, Mapping[str, float]], name: str, query_ids: Sequence[str]):
    """{query_id: {product_id: score}} → ranx.Run holding every query of ``query_ids`` (missing → empty)."""
    from ranx import Run

    full = {}
    for q in query_ids:
        docs = run.get(q) or {}
        full[q] = {str(p): float(s) for p, s in docs.items()}
    r = Run.from_dict(full, name=name)
    return r


def evaluate(qrels, run, specs: Sequence[MetricSpec]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean and per-query scores of ``run`` (a ranx.Run) for each metric, keyed by display name.

    Per-query arrays follow ``qrels.keys()`` order, so arrays of two runs on the same qrels pair up.
    """
    from ranx import evaluate as rx_evaluate

    run = run.make_comparable(qrels)
    per = rx_evaluate(qrels, run, [s.ranx for s in specs], return_mean=False, save_results_in_run=False)
    if len(specs) == 1:
        per = {specs[0].ranx: per}
    order = list(run.keys())
    want = list(qrels.keys())
    idx = [order.index(q) for q in want] if order != want else None
    out_mean, out_per = {}, {}
    for s in specs:
        arr = np.asarray(per[s.ranx], dtype=np.float64)
        if idx is not None:
            arr = arr[idx]
        out_per[s.name] = arr
        out_mean[s.name] = float(arr.mean()) if len(arr) else float("nan")
    return out_mean, out_per


def ndcg_linear(ranked_gains: Sequence[float], all_gains: Sequence[float], k: int) -> float:
    """Reference nDCG@k with linear gains (used to cross-check ranx in tests and reports)."""
    g = np.asarray(ranked_gains, dtype=np.float64)[:k]
    disc = 1.0 / np.log2(np.arange(2, len(g) + 2))
    dcg = float((g * disc).sum())
    ideal = np.sort(np.asarray(all_gains, dtype=np.float64))[::-1][:k]
    idcg = float((ideal * (1.0 / np.log2(np.arange(2, len(ideal) + 2)))).sum())
    return dcg / idcg if idcg > 0 else 0.0
