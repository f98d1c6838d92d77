"""Plain-language findings drawn from an evaluation's numbers: what a reader should not miss.

Each finding compares two systems measured in the same run (never a figure typed in by hand): whether
distillation beat the base student, whether it added anything over the human labels alone, and whether
the teacher is good enough to label and rerank (it must rank ESCI Task-1 candidates better than BM25, and better
than the base student it teaches).
"""

from __future__ import annotations

from typing import Any


def _get(table: dict, system: str, metric: str) -> float | None:
    v = table.get(system, {}).get(metric)
    return float(v) if isinstance(v, (int, float)) else None


def findings(report: dict[str, Any]) -> list[str]:
    """Findings for ``report`` (the dict written to report.json); empty when the systems are absent."""
    out: list[str] = []
    metric = list(report["metrics"])[0]
    t1_metric = list(report.get("task1_metrics") or [metric])[0]
    sysm, task1 = report["systems"], report.get("task1", {})
    sig = report.get("significance", {}).get("retrieval", {})

    base, dist, human = (_get(sysm, s, metric) for s in ("dense-base", "dense-distilled", "dense-human"))
    if base is not None and dist is not None:
        t = sig.get("dense-base", {}).get("dense-distilled", {}).get(metric, {})
        p = f", p = {t['p_value']:.3g}" if "p_value" in t else ""
        if dist > base:
            out.append(f"The distilled student beats its base model on {metric}: {dist:.4f} vs {base:.4f} "
                       f"({dist - base:+.4f}{p}{'' if t.get('significant') else ', not significant'}).")
        else:
            out.append(f"The distilled student does NOT beat its base model on {metric}: {dist:.4f} vs {base:.4f}{p}.")
    if dist is not None and human is not None:
        out.append(f"Against the same student trained on the human labels alone: {dist:.4f} vs {human:.4f} "
                   f"({dist - human:+.4f}) — what the teacher's scores and the mined candidates add over the labels.")
    teacher, bm25 = _get(task1, "teacher", t1_metric), _get(task1, "bm25", t1_metric)
    if teacher is not None and bm25 is not None and teacher <= bm25:
        out.append(f"The teacher ranks judged candidates no better than BM25 (ESCI Task 1 {t1_metric} {teacher:.4f} vs "
                   f"{bm25:.4f}): its scores add noise to distillation. Train it longer, or with the GPU recipe.")
    elif teacher is not None and (tbase := _get(task1, "dense-base", t1_metric)) is not None and teacher <= tbase:
        out.append(f"The teacher ranks judged candidates above BM25 but below the base student it teaches (ESCI Task 1 "
                   f"{t1_metric} {teacher:.4f} vs {tbase:.4f}; BM25 {bm25:.4f}): it adds little beyond the human labels. "
                   "Train it longer, or with the GPU recipe.")
    served = report.get("served") or {}
    if served.get("below_best_part"):
        out.append(f"The served configuration does not hold up on {report['split']}: {served['below_best_part']}.")
    hyb, rr = _get(sysm, "hybrid-distilled", metric), _get(sysm, "hybrid-distilled+rerank", metric)
    if hyb is not None and rr is not None and rr < hyb:
        why = ("until the teacher beats BM25 on Task 1" if teacher is not None and bm25 is not None and teacher <= bm25
               else "— the teacher orders judged candidates (Task 1) better than it orders the fused top-k of the catalog")
        out.append(f"Teacher reranking lowers {metric} ({rr:.4f} vs {hyb:.4f} without): search without `rerank` {why}.")
    return out
