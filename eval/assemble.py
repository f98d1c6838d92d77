"""The report dict of an evaluation, assembled from its ranked lists: each run scored (means, per-query metrics,
paired tests against the baselines), the served headline, the definitions of every figure and the details."""

from __future__ import annotations

import dataclasses
from typing import Any

from reldistill.eval.metrics import MetricSpec, evaluate, to_qrels, to_run
from reldistill.eval.significance import compare_to_baselines
from reldistill.eval.systems import Served, SystemRuns

BASELINES = ("bm25", "dense-base")


def task_specs(specs: list[MetricSpec], task: str) -> list[MetricSpec]:
    """Task 1 ranks every judged candidate, so Recall@depth is 1 by construction there and is left out."""
    return [s for s in specs if task == "retrieval" or not s.name.startswith("Recall@")]


def drop_unselected(systems: SystemRuns, served: Served | None) -> None:
    """With ``eval.systems``: keep only the systems asked for (and the served row with its parts)."""
    cfg, record = systems.cfg, systems.record
    if cfg.systems is None:
        return
    parts = served.parts if served is not None else {}
    for runs in systems.runs.values():
        for system in list(runs):
            key = "hybrid+rerank" if system.endswith("+rerank") else system
            if key not in cfg.systems and not system.startswith("served: ") and system not in parts:
                del runs[system]
    record.absent = {s: why for s, why in record.absent.items() if s in cfg.systems}
    record.notes["selected_systems"] = list(cfg.systems)


def score(systems: SystemRuns) -> dict[str, Any]:
    """Per task: each system's mean metrics, its per-query metrics and the paired tests against the baselines."""
    cfg, inp = systems.cfg, systems.inputs
    qrels = to_qrels(inp.qrels)
    out: dict[str, Any] = {}
    for task, runs in systems.runs.items():
        means, per_query = {}, {}
        specs = task_specs(systems.specs, task)
        for system, run in runs.items():
            m, pq = evaluate(qrels, to_run(run, system, inp.query_ids), specs)
            means[system], per_query[system] = m, pq
        sig = compare_to_baselines(per_query, list(BASELINES), cfg.stat_test, cfg.max_p, cfg.permutations)
        out[task] = {"metrics": means, "per_query": per_query, "significance": sig}
    out["query_order"] = list(qrels.keys())
    return out


def headline(systems: SystemRuns, scored: dict[str, Any], served: Served | None) -> dict[str, Any] | None:
    """The served system on the report split, the dev figures that chose it, and its best part on this split."""
    if served is None:
        return None
    split = systems.cfg.split
    metrics = scored["retrieval"]["metrics"]
    name, ndcg, serving = served.name, systems.specs[0].name, served.serving
    parts = {k: metrics[k][ndcg] for k in served.parts if k in metrics}
    best = max(parts, key=parts.get) if parts else None
    out = {"system": name, "serving": dataclasses.asdict(serving), "name": serving.name,
           "split": split, "metrics": metrics.get(name), "dev": serving.chosen_on,
           "parts": parts, "best_part": best}
    if best is not None and metrics[name][ndcg] < parts[best]:
        out["below_best_part"] = (f"on {split} the served {serving.name} ({ndcg} {metrics[name][ndcg]:.4f}) is below "
                                  f"its part {best} ({parts[best]:.4f}); dev chose it with {ndcg} "
                                  f"{serving.chosen_on.get(ndcg, float('nan')):.4f} on {serving.chosen_on.get('queries')} queries")
    return out


def definitions(systems: SystemRuns) -> dict[str, Any]:
    """What each figure of the report means, with the settings it was measured under."""
    cfg, search_cfg, teacher = systems.cfg, systems.search_cfg, systems.record.notes.get("teacher", {})
    return {
        "ndcg": "Järvelin-Kekäläinen nDCG with linear ESCI gains " + ", ".join(f"{k}={v:g}" for k, v in systems.data_cfg.gains.items()),
        "relevant_for_binary_metrics": list(cfg.relevant_labels),
        "retrieval": f"full catalog of {len(systems.inputs.product_ids):,} products, top {cfg.depth}; unjudged products gain 0",
        "task1": "rerank each query's judged candidates (ESCI Task 1)",
        "hybrid": (f"Reciprocal Rank Fusion of BM25 and the student (SearchPipeline, search.depth={search_cfg.depth} "
                   f"per retriever, k={search_cfg.rrf_k}, weights {search_cfg.weights})"),
        "rerank": (f"teacher reorders the fused top {teacher.get('rerank_k', search_cfg.rerank_k)}"
                   + ("" if teacher.get("rerank_weight") is None
                      else f", its order RRF-blended with the first stage's at w={teacher['rerank_weight']:g}")
                   + "; only that pool is returned and scored, as `search --mode rerank` runs it"),
    }


def build_report(systems: SystemRuns, scored: dict[str, Any], served: dict[str, Any] | None,
                 dev: dict[str, Any] | None) -> dict[str, Any]:
    """The report dict (nothing written): ``served`` is the headline, ``dev`` the dev comparison; ``_runs`` holds
    the ranked lists for the TREC files and is removed before writing."""
    inp, cfg, record, specs = systems.inputs, systems.cfg, systems.record, systems.specs
    per_query_ndcg = {task: {s: dict(zip(scored["query_order"], map(float, pq[specs[0].name])))
                             for s, pq in scored[task]["per_query"].items()} for task in systems.runs}
    return {
        "split": cfg.split,
        "n_queries": len(inp.query_ids),
        "systems": scored["retrieval"]["metrics"],
        "task1": scored["task1"]["metrics"],
        "absent": record.absent,
        "significance": {"test": cfg.stat_test, "max_p": cfg.max_p,
                         "retrieval": scored["retrieval"]["significance"],
                         "task1": scored["task1"]["significance"]},
        "teacher_mse": record.notes.get("teacher_mse"),
        "calibration": record.notes.pop("calibration", None),
        "metrics": {s.name: s.ranx for s in specs},
        "task1_metrics": [s.name for s in task_specs(specs, "task1")],
        "definitions": definitions(systems),
        "search": dataclasses.asdict(systems.search_cfg),
        "served": served,
        "dev": dev,
        "per_query_ndcg": per_query_ndcg,
        "data": {"source": str(systems.data_cfg.path), "judged_pairs": int(len(inp.judged)),
                 "catalog_products": len(inp.product_ids)},
        "run_dir": str(systems.run.root),
        "details": record.notes,
        "timings_s": record.timings,
        "_runs": systems.runs,  # removed before writing; kept for TREC files
    }
