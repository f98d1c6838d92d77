"""Evaluate every system a run directory holds on one split, on two tasks — through the served engine.

* ``retrieval``: full-catalog search (every product of the locale; unjudged products have gain 0).
  Every system is a `SearchPipeline` (the run's index, or one built in memory when the data is not the
  index's) scored through ``search_many`` under the recipe's ``search:`` settings — exactly the ranked
  lists `reldistill search` returns. Systems: BM25, dense base / human-labels-only / distilled student,
  hybrid RRF (base and distilled), hybrid + teacher rerank (only the reranked pool, as served), and the
  served configuration chosen on dev.
* ``task1``: ESCI Task-1 reranking of each query's judged candidates. Systems: BM25, each dense
  student, the teacher alone.
* ``dev``: the served configuration is chosen on the dev queries carved from train (never on test):
  mode, RRF weights of a small grid, rerank on/off and rerank_k (see reldistill.eval.choose); it is
  written to ``<run>/serving.json`` and is the report's headline, measured on the report split.

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

from reldistill.artifacts import MANIFEST, read_json
from reldistill.config import DataConfig
from reldistill.data.queries import normalise_query
from reldistill.errors import UserError
from reldistill.eval.choose import Candidate, choose
from reldistill.eval.metrics import MetricSpec, evaluate, metric_specs, to_qrels, to_run
from reldistill.eval.retrievers import catalog_vectors, dense_pair_scores
from reldistill.eval.significance import compare_to_baselines
from reldistill.eval.teacher_scores import TeacherScoreCache, cached_reranker
from reldistill.recipe.eval import EvalConfig
from reldistill.recipe.retrieval import IndexConfig, SearchConfig
from reldistill.retrieval.serving import Serving
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime
from reldistill.student.identity import model_identity

log = logging.getLogger(__name__)

RunDict = dict[str, dict[str, float]]
BASELINES = ("bm25", "dense-base")
STUDENT_DIRS = {"dense-human": "student-human", "dense-distilled": "student"}  # system: run stage directory


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


def split_inputs(data, examples: pd.DataFrame, split: str, max_queries: int | None = None) -> EvalInputs:
    """``split`` of ``examples`` (optionally its first ``max_queries`` queries) with its qrels, over ``data``'s catalog."""
    part = examples[examples["split"] == split]
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


def load_data(data_cfg: DataConfig):
    """(EsciData, its examples with the dev split carved from train exactly as teacher and students carve it)."""
    from reldistill.data import carve_dev, load_esci

    data = load_esci(data_cfg)
    examples = data.examples.copy()
    examples["split"] = carve_dev(examples, data_cfg.dev_fraction, data_cfg.seed)
    return data, examples


def checked_split(data, examples: pd.DataFrame, split: str, max_queries: int | None = None) -> EvalInputs:
    if not (examples["split"] == split).any():
        have = ", ".join(sorted(examples["split"].unique()))
        raise UserError(f"{data.source} has no examples in split {split!r} (splits: {have}) — pass --split with one of those.")
    return split_inputs(data, examples, split, max_queries)


def _base_student_name(run: RunDir, cfg: EvalConfig) -> str:
    """The distilled student's base model (from its manifest), else ``eval.base_student``."""
    path = run.student / MANIFEST
    if path.is_file():
        m = read_json(path)
        for key in ("base_student", "base_model", "base", "student_base"):
            v = m.get(key)
            if isinstance(v, str) and v:
                return v
            if isinstance(v, dict) and isinstance(v.get("name"), str):
                return v["name"]
    return cfg.base_student


def _seeded_subset(query_ids: list[str], n: int, seed: int) -> list[str]:
    """``n`` whole queries of ``query_ids``, chosen by a seeded hash (stable across runs and machines)."""
    if len(query_ids) <= n:
        return list(query_ids)
    key = lambda q: hashlib.sha256(f"{seed}\0rerank-dev\0{q}".encode()).hexdigest()  # noqa: E731
    keep = set(sorted(query_ids, key=key)[:n])
    return [q for q in query_ids if q in keep]


def weights_of(dense_weight: float) -> dict[str, float]:
    return {"bm25": 1.0, "dense": float(dense_weight)}


class Evaluation:
    """One evaluation of a run directory (see module docstring); ``run_all()`` returns the report dict."""

    def __init__(self, run_dir: str | Path, data_cfg: DataConfig, cfg: EvalConfig, search_cfg: SearchConfig | None = None,
                 index_cfg: IndexConfig | None = None, serving: Serving | None = None, *, runtime: Runtime | None = None):
        self.run = RunDir(run_dir)
        self.runtime = runtime or Runtime()  # how the students and the teacher run
        self.data_cfg = data_cfg
        self.cfg = cfg
        self.search_cfg = search_cfg or SearchConfig()
        self.index_cfg = index_cfg
        # a given serving is measured, not chosen; a subset of systems (--systems) chooses nothing
        self.choose_serving = serving is None and cfg.choose_on != "none" and cfg.systems is None
        self.cache_dir = self.run.eval_cache
        self.specs: list[MetricSpec] = metric_specs(data_cfg.gains, cfg.relevant_labels, cfg.ndcg_k, cfg.depth, cfg.mrr_k)
        self.runs: dict[str, dict[str, RunDict]] = {"retrieval": {}, "task1": {}}
        self.absent: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.notes: dict[str, Any] = {}
        self.pipes: dict[str, Any] = {}  # dense system -> SearchPipeline
        self.vectors: dict[str, np.ndarray] = {}  # dense system -> catalog vectors (Task 1)
        self.teacher_cache: TeacherScoreCache | None = None
        self.serving: Serving | None = serving
        self.chose = False  # whether this evaluation chose self.serving on dev
        self.dev_report: dict[str, Any] | None = None

    def wants(self, system: str) -> bool:
        """Whether ``system`` was asked for (``eval.systems``; every system by default)."""
        return self.cfg.systems is None or system in self.cfg.systems

    def _needs_student(self, system: str) -> bool:
        hybrid = "hybrid-" + system.split("-", 1)[1]
        served = system == self._served_student()
        rerank = self.wants("hybrid+rerank") and self.run.done("teacher")
        return (self.wants(system) or self.wants(hybrid)
                or (served and (rerank or self.choose_serving or self.serving is not None)))

    def _served_student(self) -> str:
        return "dense-distilled" if self.run.done("student") else "dense-base"

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
            d = self.run.stage_dir(sub)
            if (d / MANIFEST).is_file():
                out[system] = (str(d), f"{sub}/")
            else:
                what = "human-labels-only student" if sub == "student-human" else "distilled student"
                self.absent[system] = f"no finished {what} at {d} (no {MANIFEST})"
        return out

    # -- the served engine -------------------------------------------------------------------------
    def _index_pipeline(self):
        """The run's saved index as a SearchPipeline when it indexes exactly this catalog, else None."""
        from reldistill.run_layout import index_dir_of
        from reldistill.retrieval.pipeline import SearchPipeline
        from reldistill.student.catalog_vectors import catalog_digest

        index_dir = index_dir_of(self.run.root)
        if not (index_dir / MANIFEST).is_file():
            return None
        pipe = SearchPipeline.from_run(self.run.root, config=self.search_cfg, runtime=self.runtime)
        frame = pipe.catalog.frame()
        ids = frame["product_id"].astype(str).tolist()
        if catalog_digest(ids, [pipe.catalog.text(p) for p in ids]) != catalog_digest(self.inputs.product_ids, self.inputs.texts):
            self.notes["index"] = f"{index_dir} indexes another catalog than this data: pipelines built in memory"
            return None
        self.notes["index"] = {"dir": str(index_dir), "kind": pipe.dense.kind, "student": pipe.student_id}
        return pipe

    def _pipelines(self) -> None:
        """One SearchPipeline per student (the saved index for the student it was built with; the others share
        its BM25 and catalog and get an index of the same kind), each encoding a query once."""
        from reldistill.models import resolve_model
        from reldistill.retrieval.pipeline import SearchPipeline
        from reldistill.run_layout import index_dir_of
        from reldistill.student import load_student

        inp = self.inputs
        main = self._index_pipeline()
        for system, (name, desc) in self._students().items():
            if not self._needs_student(system):
                continue
            t0 = time.perf_counter()
            try:
                model = main.student if main is not None and main.student_id == model_identity(name) else load_student(name, runtime=self.runtime)
            except UserError as e:
                self.absent[system] = f"{desc} {name!r} cannot be loaded: {e}"
                continue
            emb, source = catalog_vectors(system, model, resolve_model(name, self.runtime).path, inp.product_ids, inp.texts, self.cache_dir,
                                          self.cfg.batch_size, index_dir_of(self.run.root), name)
            self.vectors[system] = emb
            if main is not None and main.student_id == model_identity(name):
                pipe = main
            elif main is not None:
                pipe = main.with_student(model, name=system, vectors=emb)
            else:
                judged = inp.judged if "esci_label" in inp.judged else None
                pipe = SearchPipeline.from_data(self._products, judged, model, vectors=emb, index_config=self.index_cfg,
                                                config=self.search_cfg, name=system,
                                                teacher_dir=self.run.teacher if self.run.done("teacher") else None,
                                                runtime=self.runtime)
                main = pipe  # the other students share its BM25 and catalog
            pipe.query_vectors = {}
            self.pipes[system] = pipe
            self.notes.setdefault("students", {})[system] = {
                "model": name, "catalog_embeddings_cached": source != "encoded", "catalog_embeddings_from": source,
                "index": "saved index" if pipe is main and main.index_dir is not None else f"in memory ({pipe.dense.kind})",
                "index_kind": pipe.dense.kind}
            self.timings[f"{system}_s"] = round(time.perf_counter() - t0, 2)

    def _teacher_ready(self) -> bool:
        tdir = self.run.teacher
        if self.teacher_cache is None and (tdir / MANIFEST).is_file():
            self.teacher_cache = TeacherScoreCache(tdir, self.cache_dir, self.cfg.teacher_dtype, self.cfg.teacher_batch,
                                                   runtime=self.runtime)
        return self.teacher_cache is not None

    def search(self, system: str, inp: EvalInputs, mode: str, weights: dict[str, float] | None = None,
               rerank_k: int | None = None, query_ids: list[str] | None = None,
               rerank_weight: float | None | str = "search") -> RunDict:
        """The ranked lists ``search_many`` serves for ``system``'s pipeline under these settings, as a run dict.

        bm25 / dense / hybrid return the top ``eval.depth``; rerank returns the reranked pool only (the
        fused top rerank_k, or k=ndcg_k when larger), as `reldistill search --mode rerank --k 10` does.
        ``rerank_weight`` "search" keeps ``search.rerank_weight``.
        """
        qids = query_ids or inp.query_ids
        qtext = dict(zip(inp.query_ids, inp.queries))
        cfg = dataclasses.replace(self.search_cfg, weights=dict(weights or self.search_cfg.weights),
                                  rerank_k=rerank_k or self.search_cfg.rerank_k,
                                  rerank_weight=self.search_cfg.rerank_weight if rerank_weight == "search" else rerank_weight)
        pipe = self.pipes[system]
        queries = [qtext[q] for q in qids]
        if mode == "rerank":
            pipe = pipe.with_config(cfg, reranker=cached_reranker(self.teacher_cache))
            k = max(cfg.rerank_k, self.cfg.ndcg_k, self.cfg.mrr_k)
            pools = pipe.search_many(queries, "hybrid", k=k)  # score every pool's pairs in one batched pass
            self.teacher_cache.scores([q.strip() for q, pool in zip(queries, pools) for _ in pool],  # as search strips it
                                      [pipe.catalog.text(p) for pool in pools for p, _ in pool], progress=True)
        else:
            pipe = pipe.with_config(cfg)
            k = self.cfg.depth
        ranked = pipe.search_many(queries, mode, k=k)
        return {q: {p: float(s) for p, s in hits} for q, hits in zip(qids, ranked)}

    # -- systems -----------------------------------------------------------------------------------
    def _retrieval(self) -> None:
        inp, ret = self.inputs, self.runs["retrieval"]
        first = next(iter(self.pipes), None)
        if first is None:
            from reldistill.index.lexical import BM25Index

            self._bm25 = self._timed("bm25_index_s", BM25Index.build, inp.product_ids, inp.texts)
        else:
            self._bm25 = self.pipes[first].bm25
        if self.wants("bm25"):
            if first is not None:
                ret["bm25"] = self._timed("bm25_search_s", self.search, first, inp, "bm25")
            else:
                ids, sc = self._bm25.search(inp.queries, self.cfg.depth)
                ret["bm25"] = {q: dict(zip(i, s)) for q, i, s in zip(inp.query_ids, ids, sc)}
        for system in self.pipes:
            t0 = time.perf_counter()
            ret[system] = self.search(system, inp, "dense")
            hybrid = "hybrid-" + system.split("-", 1)[1]
            if system != "dense-human":
                ret[hybrid] = self.search(system, inp, "hybrid")
            self.timings[f"{system}_search_s"] = round(time.perf_counter() - t0, 2)
        for student in ("dense-base", "dense-distilled"):
            if student not in self.pipes:
                self.absent["hybrid-" + student.split("-", 1)[1]] = f"needs {student}, which is absent"

    def _task1(self) -> None:
        inp = self.inputs
        queries, pids = inp.judged["query"].astype(str).tolist(), inp.judged["product_id"].astype(str).tolist()
        self.runs["task1"]["bm25"] = self._task1_run(self._bm25.score_pairs(queries, pids))
        rows = [self.row_of[p] for p in pids]
        for system, pipe in self.pipes.items():
            scores = dense_pair_scores(pipe._encode(queries), self.vectors[system], rows)
            self.runs["task1"][system] = self._task1_run(scores)
            self._calibrated(system, self.run.stage_dir(STUDENT_DIRS[system]) if system in STUDENT_DIRS else None, scores, False)

    def _teacher(self) -> None:
        inp = self.inputs
        if not (self.wants("teacher") or self.wants("hybrid+rerank")):
            return
        if not self._teacher_ready():
            reason = f"no finished teacher at {self.run.teacher} (no {MANIFEST})"
            self.absent["teacher"] = reason
            self.absent["hybrid+rerank"] = reason
            return
        t0 = time.perf_counter()
        cache = self.teacher_cache
        judged_scores = cache.scores(inp.judged["query"].astype(str).tolist(),
                                     [inp.texts[self.row_of[p]] for p in inp.judged["product_id"]], progress=True)
        n_task1 = len(judged_scores)
        self.runs["task1"]["teacher"] = self._task1_run(judged_scores)
        self._calibrated("teacher", self.run.teacher, judged_scores, True)
        if read_json(self.run.teacher / MANIFEST).get("prior"):  # the blend hides the LLM's own judgement: show it too
            alone = TeacherScoreCache(self.run.teacher, self.cache_dir, self.cfg.teacher_dtype, self.cfg.teacher_batch, prior=False,
                                      runtime=self.runtime)
            self.runs["task1"]["teacher (LLM alone)"] = self._task1_run(
                alone.scores(inp.judged["query"].astype(str).tolist(), [inp.texts[self.row_of[p]] for p in inp.judged["product_id"]]))
        soft = inp.judged["soft_label"].to_numpy(dtype=np.float64)
        labels = inp.judged["esci_label"].astype(str)
        self.notes["teacher_mse"] = {
            "mse": float(np.mean((judged_scores - soft) ** 2)),
            "pairs": int(len(soft)),
            "mean_score_by_label": {lab: float(judged_scores[(labels == lab).to_numpy()].mean())
                                    for lab in sorted(labels.unique())},
        }
        if self._served_student() not in self.pipes:
            self.absent["hybrid+rerank"] = f"needs {self._served_student()}, which is absent"
        self.notes["teacher"] = {"task1_pairs": n_task1, "dtype": self.cfg.teacher_dtype}
        self.timings["teacher_s"] = round(time.perf_counter() - t0, 2)

    def _calibrated(self, system: str, model_dir, scores: np.ndarray, raw_is_probability: bool) -> None:
        """ECE / Brier / reliability of ``system``'s calibrated probabilities on the report split's judged pairs."""
        from reldistill.calibration import load_calibration
        from reldistill.eval.calibration import calibration_block

        cal = load_calibration(model_dir)
        if cal is None:
            return
        block = calibration_block(cal, scores, self.inputs.judged["esci_label"].to_numpy(), raw_is_probability)
        block["served_student"] = system == self._served_student()
        self.notes.setdefault("calibration", {})[system] = block

    def _rerank_row(self) -> None:
        """``hybrid-<student>+rerank`` on the report split with what `search --mode rerank` runs: the serving's
        settings (the dev-best rerank when dev chose another mode), else the recipe's ``search:``."""
        student = self._served_student()
        if not (self.wants("teacher") or self.wants("hybrid+rerank")) or not self._teacher_ready() or student not in self.pipes:
            return
        t0 = time.perf_counter()
        cfg = self.serving.search_config(self.search_cfg) if self.serving is not None else self.search_cfg
        self.runs["retrieval"][f"hybrid-{student.split('-', 1)[1]}+rerank"] = self.search(
            student, self.inputs, "rerank", cfg.weights, cfg.rerank_k, rerank_weight=cfg.rerank_weight)
        self.notes["teacher"].update(rerank_k=cfg.rerank_k, rerank_weight=cfg.rerank_weight, rerank_weights=dict(cfg.weights))
        self.timings["teacher_s"] = round(self.timings.get("teacher_s", 0.0) + time.perf_counter() - t0, 2)

    # -- the served configuration, chosen on dev ---------------------------------------------------
    def _candidates(self, inp: EvalInputs, student: str) -> tuple[list[Candidate], dict[str, Any]]:
        """Every configuration of the served pipeline the dev split compares, with its dev metrics."""
        qrels = to_qrels(inp.qrels)
        ndcg = self.specs[0].name
        cands: list[Candidate] = []
        table: dict[str, Any] = {}

        runs: dict[str, RunDict] = {}

        def add(serving: Serving, run: RunDict, qids: list[str], candidate: bool = True, name: str | None = None) -> Candidate:
            sub = to_qrels({q: inp.qrels[q] for q in qids}) if len(qids) < len(inp.query_ids) else qrels
            means, per = evaluate(sub, to_run(run, serving.name, qids), self.specs)
            c = Candidate(serving, dict(zip(sub.keys(), map(float, per[ndcg]))))
            runs[serving.name] = run
            if candidate:
                cands.append(c)
                table[serving.name] = {**means, "queries": len(qids)}
            else:
                table[name] = {**means, "queries": len(qids), "note": "the rerank rows' queries: what rerank is measured against"}
            return c

        for mode in ("bm25", "dense"):
            add(Serving(mode, weights=dict(self.search_cfg.weights)), self.search(student, inp, mode), inp.query_ids)
        hybrids = [add(Serving("hybrid", weights=weights_of(w)), self.search(student, inp, "hybrid", weights_of(w)), inp.query_ids)
                   for w in self.cfg.weight_grid]
        for other in self.pipes:  # the other students on dev too (reported; the run's index serves only `student`)
            if other != student:
                for mode in ("dense",) + (("hybrid",) if other == "dense-base" else ()):
                    name = other if mode == "dense" else "hybrid-base"
                    table[name] = {**evaluate(qrels, to_run(self.search(other, inp, mode), name, inp.query_ids), self.specs)[0],
                                   "queries": len(inp.query_ids), "not_served": True}
        if self._teacher_ready():
            best = max(hybrids, key=lambda c: c.mean)
            sub = _seeded_subset(inp.query_ids, self.cfg.dev_rerank_queries, self.data_cfg.seed)
            self.notes["dev_rerank_queries"] = len(sub)
            if len(sub) < len(inp.query_ids):  # the first stages on the same queries, so rerank reads against them
                for c in (best, next(c for c in cands if c.serving.mode == "dense")):
                    add(c.serving, runs[c.serving.name], sub, candidate=False, name=f"{c.serving.name} on the {len(sub)} rerank queries")
            for rk in self.cfg.rerank_k_grid:
                for rw in self.cfg.rerank_weight_grid:  # the teacher's scores are cached: a blend costs no forward
                    serving = Serving("rerank", weights=dict(best.serving.weights), rerank_k=rk, rerank_weight=rw)
                    add(serving, self.search(student, inp, "rerank", serving.weights, rk, query_ids=sub, rerank_weight=rw), sub)
        return cands, table

    def _choose(self, data, examples: pd.DataFrame) -> None:
        student = self._served_student()
        if not self.choose_serving or student not in self.pipes:
            return
        dev = split_inputs(data, examples, self.cfg.choose_on)
        leaked = self._dev_leaks(dev)
        if leaked:
            log.warning("%d dev queries appear among the student's training candidates: left out of the choice", len(leaked))
            keep = [i for i, q in enumerate(dev.query_ids) if q not in leaked]
            dev = dataclasses.replace(dev, query_ids=[dev.query_ids[i] for i in keep], queries=[dev.queries[i] for i in keep],
                                      qrels={q: d for q, d in dev.qrels.items() if q not in leaked})
        if not dev.query_ids:
            self.notes["serving"] = f"no {self.cfg.choose_on} queries (data.dev_fraction={self.data_cfg.dev_fraction}): nothing chosen"
            return
        t0 = time.perf_counter()
        cands, table = self._candidates(dev, student)
        chosen, why = choose(cands, self.cfg.min_gain, self.cfg.max_p, self.cfg.stat_test)
        ndcg = self.specs[0].name
        reranks = [c for c in cands if c.serving.mode == "rerank"]
        if chosen.serving.mode != "rerank" and reranks:  # what `mode=rerank` requests get: the best rerank on dev
            r = max(reranks, key=lambda c: c.mean)
            chosen.serving.rerank = {"rerank_k": r.serving.rerank_k, "rerank_weight": r.serving.rerank_weight,
                                     "first_stage_on_dev": dict(r.serving.weights), "name": r.serving.name,
                                     ndcg: table[r.serving.name][ndcg], "queries": table[r.serving.name]["queries"]}
            why.append(f"`mode=rerank` requests get the best rerank on dev: rerank@{r.serving.rerank_k}"
                       + ("" if r.serving.rerank_weight is None else f" blended with w={r.serving.rerank_weight:g}")
                       + f" ({ndcg} {table[r.serving.name][ndcg]:.4f} on {table[r.serving.name]['queries']} dev queries)")
        chosen.serving.chosen_on = {
            "split": self.cfg.choose_on, "queries": len(dev.query_ids), "rerank_queries": self.notes.get("dev_rerank_queries"),
            "student": student, "metric": ndcg, ndcg: table[chosen.serving.name][ndcg],
            "rule": f"simplest system unless a system with more parts gains ≥ {self.cfg.min_gain:g} dev {ndcg} with p < {self.cfg.max_p:g}",
            "decisions": why, "dev_leaks_left_out": len(leaked)}
        self.serving, self.chose = chosen.serving, True
        self.dev_report = {"split": self.cfg.choose_on, "n_queries": len(dev.query_ids), "systems": table, "chosen": chosen.serving.name,
                           "decisions": why, "rerank_queries": self.notes.get("dev_rerank_queries")}
        self.timings["choose_on_dev_s"] = round(time.perf_counter() - t0, 2)

    def _dev_leaks(self, dev: EvalInputs) -> set[str]:
        """Dev queries (by id or normalised text) among the run's mined training candidates: must be none."""
        cands = self.run.candidates_file
        if not cands.is_file():
            return set()
        df = pd.read_parquet(cands, columns=["query_id", "query"])
        seen_ids, seen_text = set(df["query_id"].astype(str)), set(map(normalise_query, df["query"]))
        return {q for q, t in zip(dev.query_ids, dev.queries) if str(q) in seen_ids or normalise_query(t) in seen_text}

    def _served(self) -> None:
        """The dev-chosen configuration on the report split (and its parts, to show what it adds)."""
        if self.serving is None:
            return
        s, student, ret = self.serving, self._served_student(), self.runs["retrieval"]
        if student not in self.pipes or (s.mode == "rerank" and not self._teacher_ready()):
            self.absent[f"served: {s.name}"] = f"needs {student}" + (" and the teacher" if s.mode == "rerank" else "")
            self.serving = None
            return
        tag = student.split("-", 1)[1]
        name = f"served: {s.name}"
        ret[name] = self.search(student, self.inputs, s.mode, s.weights, s.rerank_k, rerank_weight=s.rerank_weight)
        parts = {k: ret[k] for k in ("bm25", student) if k in ret}
        if s.mode == "rerank":
            default = dict(self.search_cfg.weights) == dict(s.weights)
            parts[f"hybrid-{tag}" if default else f"hybrid({','.join(f'{k}={v:g}' for k, v in sorted(s.weights.items()))})"] = (
                ret[f"hybrid-{tag}"] if default else self.search(student, self.inputs, "hybrid", s.weights))
        self._served_parts = {k: v for k, v in parts.items() if k != name}
        for k, v in self._served_parts.items():
            ret.setdefault(k, v)
        self._served_name = name

    def run_all(self) -> dict[str, Any]:
        """Build every present system's runs, score them, and return the report dict (nothing written)."""
        t0 = time.perf_counter()
        data, examples = self._timed("load_data_s", load_data, self.data_cfg)
        self._products = data.products
        self.inputs = checked_split(data, examples, self.cfg.split, self.cfg.max_queries)
        self.row_of = self.inputs.row_of
        self._timed("pipelines_s", self._pipelines)
        self._retrieval()
        self._task1()
        self._teacher()
        self._choose(data, examples)
        self._rerank_row()
        self._served()
        self._drop_unselected()
        if self.teacher_cache is not None:
            self.notes["teacher_scores"] = {"cached_before": self.teacher_cache.loaded_from_cache, "scored_now": self.teacher_cache.scored,
                                            "reused": self.teacher_cache.hits}
        scored = self._timed("metrics_s", self._score)
        self.timings["total_s"] = round(time.perf_counter() - t0, 2)
        return self._report(scored)

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

    def _drop_unselected(self) -> None:
        if self.cfg.systems is None:
            return
        for runs in self.runs.values():
            for system in list(runs):
                key = "hybrid+rerank" if system.endswith("+rerank") else system
                if key not in self.cfg.systems and not system.startswith("served: ") and system not in getattr(self, "_served_parts", {}):
                    del runs[system]
        self.absent = {s: why for s, why in self.absent.items() if s in self.cfg.systems}
        self.notes["selected_systems"] = list(self.cfg.systems)

    def _headline(self, scored: dict[str, Any]) -> dict[str, Any] | None:
        """The served system on the report split, the dev figures that chose it, and its best part on this split."""
        if self.serving is None:
            return None
        metrics = scored["retrieval"]["metrics"]
        name, ndcg = self._served_name, self.specs[0].name
        parts = {k: metrics[k][ndcg] for k in self._served_parts if k in metrics}
        best = max(parts, key=parts.get) if parts else None
        out = {"system": name, "serving": dataclasses.asdict(self.serving), "name": self.serving.name,
               "split": self.cfg.split, "metrics": metrics.get(name), "dev": self.serving.chosen_on,
               "parts": parts, "best_part": best}
        if best is not None and metrics[name][ndcg] < parts[best]:
            out["below_best_part"] = (f"on {self.cfg.split} the served {self.serving.name} ({ndcg} {metrics[name][ndcg]:.4f}) is below "
                                      f"its part {best} ({parts[best]:.4f}); dev chose it with {ndcg} "
                                      f"{self.serving.chosen_on.get(ndcg, float('nan')):.4f} on {self.serving.chosen_on.get('queries')} queries")
        return out

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
            "calibration": self.notes.pop("calibration", None),
            "metrics": {s.name: s.ranx for s in self.specs},
            "task1_metrics": [s.name for s in self.task_specs("task1")],
            "definitions": {
                "ndcg": "Järvelin-Kekäläinen nDCG with linear ESCI gains " + ", ".join(f"{k}={v:g}" for k, v in self.data_cfg.gains.items()),
                "relevant_for_binary_metrics": list(self.cfg.relevant_labels),
                "retrieval": f"full catalog of {len(inp.product_ids):,} products, top {self.cfg.depth}; unjudged products gain 0",
                "task1": "rerank each query's judged candidates (ESCI Task 1)",
                "hybrid": (f"Reciprocal Rank Fusion of BM25 and the student (SearchPipeline, search.depth={self.search_cfg.depth} "
                           f"per retriever, k={self.search_cfg.rrf_k}, weights {self.search_cfg.weights})"),
                "rerank": (f"teacher reorders the fused top {self.notes.get('teacher', {}).get('rerank_k', self.search_cfg.rerank_k)}"
                           + ("" if self.notes.get("teacher", {}).get("rerank_weight") is None
                              else f", its order RRF-blended with the first stage's at w={self.notes['teacher']['rerank_weight']:g}")
                           + "; only that pool is returned and scored, as `search --mode rerank` runs it"),
            },
            "search": dataclasses.asdict(self.search_cfg),
            "served": self._headline(scored),
            "dev": self.dev_report,
            "per_query_ndcg": per_query_ndcg,
            "data": {"source": str(self.data_cfg.path), "judged_pairs": int(len(inp.judged)),
                     "catalog_products": len(inp.product_ids)},
            "run_dir": str(self.run.root),
            "details": self.notes,
            "timings_s": self.timings,
            "_runs": self.runs,  # removed before writing; kept for TREC files
        }
