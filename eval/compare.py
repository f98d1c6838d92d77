"""Evaluate every system a run directory holds on one split, on two tasks.

* ``retrieval``: full-catalog search (every product of the locale; unjudged products have gain 0).
  Systems: BM25, dense base / human-labels-only / distilled student, hybrid RRF (base and distilled),
  hybrid + teacher rerank of the top ``rerank_k``.
* ``task1``: ESCI Task-1 reranking of each query's judged candidates. Systems: BM25, each dense
  student, the teacher alone.

A system whose artifact is missing is listed under ``absent`` with the reason — never scored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reldistill.artifacts import MANIFEST, RunDir, read_json
from reldistill.config import DataConfig
from reldistill.errors import UserError
from reldistill.eval.config import EvalConfig
from reldistill.eval.metrics import MetricSpec, evaluate, metric_specs, to_qrels, to_run
from reldistill.eval.retrievers import BM25Searcher, DenseSearcher, RunDict, rerank_run, rrf
from reldistill.eval.significance import compare_to_baselines

log = logging.getLogger(__name__)

BASELINES = ("bm25", "dense-base")
STUDENT_DIRS = {"dense-human": "student-human", "dense-distilled": "student"}


@dataclasses.dataclass
class EvalInputs:
    """The split's queries, judged pairs and the catalog they are searched in."""

    query_ids: list[str]
    queries: list[str]
    judged: pd.DataFrame  # query_id, query, product_id, esci_label, soft_label, gain
    product_ids: list[str]
    texts: list[str]
    qrels: dict[str, dict[str, float]]

    @property
    def row_of(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.product_ids)}


def load_inputs(data_cfg: DataConfig, split: str, max_queries: int | None = None) -> EvalInputs:
    """Load the data, keep ``split`` (optionally its first ``max_queries`` queries), build qrels."""
    from reldistill.data import load_esci

    data = load_esci(data_cfg)
    part = data.split(split)
    if part.empty:
        have = ", ".join(sorted(data.examples["split"].unique()))
        raise UserError(f"{data.source} has no examples in split {split!r} (splits: {have}) — pass --split with one of those.")
    qids = list(dict.fromkeys(part["query_id"]))
    if max_queries:
        qids = qids[:max_queries]
        part = part[part["query_id"].isin(qids)]
    first = part.drop_duplicates("query_id").set_index("query_id")["query"]
    qrels: dict[str, dict[str, float]] = {}
    for q, p, g in part[["query_id", "product_id", "gain"]].itertuples(index=False):
        qrels.setdefault(q, {})[p] = float(g)
    products = data.products
    return EvalInputs(qids, [str(first[q]) for q in qids], part.reset_index(drop=True),
                      products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist(), qrels)


def _base_student_name(run: RunDir, cfg: EvalConfig) -> str:
    """The distilled student's base model (from its manifest), else ``eval.base_student``."""
    path = run.root / "student" / MANIFEST
    if path.is_file():
        m = read_json(path)
        for key in ("base_student", "base_model", "base", "student_base"):
            v = m.get(key)
            if isinstance(v, str) and v:
                return v
            if isinstance(v, dict) and isinstance(v.get("name"), str):
                return v["name"]
    return cfg.base_student


def _digest(*parts: Any) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:16]


class Evaluation:
    """One evaluation of a run directory (see module docstring); ``run()`` returns the report dict."""

    def __init__(self, run_dir: str | Path, data_cfg: DataConfig, cfg: EvalConfig):
        self.run = RunDir(run_dir)
        self.data_cfg = data_cfg
        self.cfg = cfg
        self.cache_dir = self.run.root / "eval" / "cache"
        self.specs: list[MetricSpec] = metric_specs(data_cfg.gains, cfg.relevant_labels, cfg.ndcg_k, cfg.depth, cfg.mrr_k)
        self.runs: dict[str, dict[str, RunDict]] = {"retrieval": {}, "task1": {}}
        self.absent: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.notes: dict[str, Any] = {}

    def wants(self, system: str) -> bool:
        """Whether ``system`` was asked for (``eval.systems``; every system by default)."""
        return self.cfg.systems is None or system in self.cfg.systems

    def _needs_student(self, system: str) -> bool:
        hybrid = "hybrid-" + system.split("-", 1)[1]
        rerank_on = "hybrid-distilled" if (self.run.root / "student" / MANIFEST).is_file() else "hybrid-base"
        rerank = self.wants("hybrid+rerank") and (self.run.root / "teacher" / MANIFEST).is_file() and rerank_on == hybrid
        return self.wants(system) or self.wants(hybrid) or rerank

    # -- helpers ---------------------------------------------------------------------------------
    def _timed(self, key: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.timings[key] = round(time.perf_counter() - t0, 2)
        return out

    def _task1_run(self, scores: np.ndarray) -> RunDict:
        out: RunDict = {}
        for (q, p), s in zip(self.inputs.judged[["query_id", "product_id"]].itertuples(index=False), scores):
            out.setdefault(q, {})[p] = float(s)
        return out

    def _students(self) -> dict[str, tuple[str, str]]:
        """{system: (model name or folder, description)} for the students this run has."""
        out = {"dense-base": (_base_student_name(self.run, self.cfg), "base student (no fine-tuning)")}
        for system, sub in STUDENT_DIRS.items():
            d = self.run.root / sub
            if (d / MANIFEST).is_file():
                out[system] = (str(d), f"{sub}/")
            else:
                what = "human-labels-only student" if sub == "student-human" else "distilled student"
                self.absent[system] = f"no finished {what} at {d} (no {MANIFEST})"
        return out

    # -- systems ---------------------------------------------------------------------------------
    def _lexical(self) -> BM25Searcher:
        inp = self.inputs
        bm25 = self._timed("bm25_index_s", BM25Searcher, inp.product_ids, inp.texts)
        self.runs["retrieval"]["bm25"] = self._timed("bm25_search_s", bm25.search, inp.query_ids, inp.queries, self.cfg.depth)
        rows = [self.row_of[p] for p in inp.judged["product_id"]]
        self.runs["task1"]["bm25"] = self._task1_run(bm25.score_pairs(inp.judged["query"].tolist(), rows))
        return bm25

    def _dense(self) -> None:
        from reldistill.models import resolve_model
        from reldistill.student import load_student

        inp = self.inputs
        rows = [self.row_of[p] for p in inp.judged["product_id"]]
        for system, (name, desc) in self._students().items():
            if not self._needs_student(system):
                continue
            t0 = time.perf_counter()
            try:
                model = load_student(name)
            except UserError as e:
                self.absent[system] = f"{desc} {name!r} cannot be loaded: {e}"
                continue
            searcher = DenseSearcher(system, model, resolve_model(name).path, inp.product_ids, inp.texts,
                                     self.cache_dir, self.cfg.batch_size, self.run.root / "index", name)
            self.runs["retrieval"][system] = searcher.search(inp.query_ids, inp.queries, self.cfg.depth)
            self.runs["task1"][system] = self._task1_run(searcher.score_pairs(inp.judged["query"].tolist(), rows))
            self.notes.setdefault("students", {})[system] = {"model": name, "catalog_embeddings_cached": searcher.from_cache,
                                                            "catalog_embeddings_from": searcher.source}
            self.timings[f"{system}_s"] = round(time.perf_counter() - t0, 2)

    def _hybrids(self) -> None:
        ret = self.runs["retrieval"]
        for student in ("dense-base", "dense-distilled"):
            name = "hybrid-" + student.split("-", 1)[1]
            if student in ret:
                ret[name] = rrf([ret["bm25"], ret[student]], self.cfg.rrf_k, self.cfg.depth)
            else:
                self.absent[name] = f"needs {student}, which is absent"

    def _teacher(self) -> None:
        inp = self.inputs
        tdir = self.run.root / "teacher"
        ret = self.runs["retrieval"]
        hybrid = "hybrid-distilled" if "hybrid-distilled" in ret else "hybrid-base"
        rerank_name = f"{hybrid}+rerank"
        if not (self.wants("teacher") or self.wants("hybrid+rerank")):
            return
        if not (tdir / MANIFEST).is_file():
            reason = f"no finished teacher at {tdir} (no {MANIFEST})"
            self.absent["teacher"] = reason
            self.absent["hybrid+rerank"] = reason
            return
        if self.cfg.rerank_k == 0:
            self.absent["hybrid+rerank"] = "eval.rerank_k is 0"
        pairs = {(q, p) for q, p in inp.judged[["query_id", "product_id"]].itertuples(index=False)}
        n_task1 = len(pairs)
        if self.cfg.rerank_k and hybrid in ret:
            for q, docs in ret[hybrid].items():
                pairs.update((q, p) for p in list(docs)[: self.cfg.rerank_k])
        scores = self._timed("teacher_s", self._teacher_scores, tdir, sorted(pairs))
        self.notes["teacher"] = {"pairs_scored": len(pairs), "task1_pairs": n_task1,
                                 "rerank_extra_pairs": len(pairs) - n_task1, "dtype": self.cfg.teacher_dtype}
        judged_scores = np.array([scores[(q, p)] for q, p in inp.judged[["query_id", "product_id"]].itertuples(index=False)])
        self.runs["task1"]["teacher"] = self._task1_run(judged_scores)
        soft = inp.judged["soft_label"].to_numpy(dtype=np.float64)
        labels = inp.judged["esci_label"].astype(str)
        self.notes["teacher_mse"] = {
            "mse": float(np.mean((judged_scores - soft) ** 2)),
            "pairs": int(len(soft)),
            "mean_score_by_label": {lab: float(judged_scores[(labels == lab).to_numpy()].mean())
                                    for lab in sorted(labels.unique())},
        }
        if self.cfg.rerank_k and hybrid in ret:
            ret[rerank_name] = rerank_run(ret[hybrid], scores, self.cfg.rerank_k)

    def _teacher_scores(self, tdir: Path, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """Teacher probabilities for ``pairs`` (query_id, product_id), cached per teacher artifact."""
        from reldistill.artifacts import write_parquet

        key = _digest((tdir / MANIFEST).read_text(encoding="utf-8"), self.cfg.teacher_dtype)
        cache = self.cache_dir / f"teacher-{key}.parquet"
        known: dict[tuple[str, str], float] = {}
        if cache.is_file():
            df = pd.read_parquet(cache)
            known = {(q, p): float(s) for q, p, s in df[["query_id", "product_id", "score"]].itertuples(index=False)}
        todo = [pq for pq in pairs if pq not in known]
        if todo:
            from reldistill.teacher import Teacher

            teacher = Teacher.load(tdir, dtype=self.cfg.teacher_dtype)
            qtext = dict(zip(self.inputs.query_ids, self.inputs.queries))
            texts = self.inputs.texts
            new = teacher.score_pairs([qtext[q] for q, _ in todo], [texts[self.row_of[p]] for _, p in todo],
                                      batch_size=self.cfg.teacher_batch, progress=True)
            known.update({pq: float(s) for pq, s in zip(todo, new)})
            write_parquet(cache, pd.DataFrame([(q, p, s) for (q, p), s in known.items()],
                                              columns=["query_id", "product_id", "score"]))
        self.notes["teacher_scores_cached"] = len(pairs) - len(todo)
        return {pq: known[pq] for pq in pairs}

    def task_specs(self, task: str) -> list[MetricSpec]:
        """Task 1 ranks every judged candidate, so Recall@depth is 1 by construction there and is left out."""
        return [s for s in self.specs if task == "retrieval" or not s.name.startswith("Recall@")]

    # -- scoring -----------------------------------------------------------------------------------
    def _score(self) -> dict[str, Any]:
        qrels = to_qrels(self.inputs.qrels)
        out: dict[str, Any] = {}
        for task, runs in self.runs.items():
            means, per_query = {}, {}
            specs = self.task_specs(task)
            for system, run in runs.items():
                m, pq = evaluate(qrels, to_run(run, system, self.inputs.query_ids), specs)
                means[system], per_query[system] = m, pq
            sig = compare_to_baselines(per_query, list(BASELINES), self.cfg.stat_test, self.cfg.max_p, self.cfg.permutations)
            out[task] = {"metrics": means, "per_query": per_query, "significance": sig}
        out["query_order"] = list(qrels.keys())
        return out

    def run_all(self) -> dict[str, Any]:
        """Build every present system's runs, score them, and return the report dict (nothing written)."""
        t0 = time.perf_counter()
        self.inputs = self._timed("load_data_s", load_inputs, self.data_cfg, self.cfg.split, self.cfg.max_queries)
        self.row_of = self.inputs.row_of
        self._lexical()
        self._dense()
        self._hybrids()
        self._teacher()
        self._drop_unselected()
        scored = self._timed("metrics_s", self._score)
        self.timings["total_s"] = round(time.perf_counter() - t0, 2)
        return self._report(scored)

    def _drop_unselected(self) -> None:
        if self.cfg.systems is None:
            return
        for runs in self.runs.values():
            for system in list(runs):
                key = "hybrid+rerank" if system.endswith("+rerank") else system
                if key not in self.cfg.systems:
                    del runs[system]
        self.absent = {s: why for s, why in self.absent.items() if s in self.cfg.systems}
        self.notes["selected_systems"] = list(self.cfg.systems)

    def _report(self, scored: dict[str, Any]) -> dict[str, Any]:
        inp = self.inputs
        per_query_ndcg = {task: {s: dict(zip(scored["query_order"], map(float, pq[self.specs[0].name])))
                                 for s, pq in scored[task]["per_query"].items()} for task in self.runs}
        return {
            "split": self.cfg.split,
            "n_queries": len(inp.query_ids),
            "systems": scored["retrieval"]["metrics"],
            "task1": scored["task1"]["metrics"],
            "absent": self.absent,
            "significance": {"test": self.cfg.stat_test, "max_p": self.cfg.max_p,
                             "retrieval": scored["retrieval"]["significance"],
                             "task1": scored["task1"]["significance"]},
            "teacher_mse": self.notes.get("teacher_mse"),
            "metrics": {s.name: s.ranx for s in self.specs},
            "task1_metrics": [s.name for s in self.task_specs("task1")],
            "definitions": {
                "ndcg": "Järvelin-Kekäläinen nDCG with linear ESCI gains " + ", ".join(f"{k}={v:g}" for k, v in self.data_cfg.gains.items()),
                "relevant_for_binary_metrics": list(self.cfg.relevant_labels),
                "retrieval": f"full catalog of {len(inp.product_ids):,} products, top {self.cfg.depth}; unjudged products gain 0",
                "task1": "rerank each query's judged candidates (ESCI Task 1)",
                "hybrid": f"Reciprocal Rank Fusion of BM25 and the student, k={self.cfg.rrf_k}",
                "rerank": f"teacher reorders the hybrid top {self.cfg.rerank_k}",
            },
            "per_query_ndcg": per_query_ndcg,
            "data": {"source": str(self.data_cfg.path), "judged_pairs": int(len(inp.judged)),
                     "catalog_products": len(inp.product_ids)},
            "run_dir": str(self.run.root),
            "details": self.notes,
            "timings_s": self.timings,
            "_runs": self.runs,  # removed before writing; kept for TREC files
        }
