"""The metrics `reldistill eval` reports, named for the report, computed by reldistill.metrics (ranx, one gain scale).

nDCG@k is graded (linear ESCI gains, Järvelin & Kekäläinen — the official ESCI Task-1 metric); the
binary metrics (Recall, MRR, MAP) count a product as relevant when its gain is at least that of the
lowest ``relevant_labels`` label (default: Exact only), through ranx's relevance level ``-l<N>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from reldistill import metrics as core
from reldistill.errors import UserError
from reldistill.metrics import scaled_gain, to_qrels, to_run

__all__ = ["MetricSpec", "evaluate", "metric_specs", "scaled_gain", "to_qrels", "to_run"]


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
        raise UserError(f"eval.relevant_labels names {unknown[0]!r}, which is not a label of data.gains ({', '.join(gains)}).")
    level = min(scaled_gain(gains[lab]) for lab in relevant_labels)
    if level < 1:
        raise UserError("eval.relevant_labels must name labels with a gain above 0 (e.g. [E] or [E, S]).")
    return [
        MetricSpec(f"nDCG@{ndcg_k}", f"ndcg@{ndcg_k}"),
        MetricSpec(f"Recall@{depth}", f"recall@{depth}-l{level}"),
        MetricSpec(f"MRR@{mrr_k}", f"mrr@{mrr_k}-l{level}"),
        MetricSpec("MAP", f"map-l{level}"),
    ]


def evaluate(qrels, run, specs: Sequence[MetricSpec]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean and per-query scores of ``run`` (a ranx.Run) for each metric, keyed by display name (qrels order)."""
    means, per = core.evaluate(qrels, run, [s.ranx for s in specs])
    return {s.name: means[s.ranx] for s in specs}, {s.name: per[s.ranx] for s in specs}
