"""Every system of a run evaluated through the served engine: one `SearchPipeline` per student (the run's saved
index when it indexes this catalog), scored through ``search_many`` exactly as `reldistill search` serves it, on
full-catalog retrieval and on ESCI Task 1; the teacher alone, the teacher rerank row and the served configuration."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.artifacts import MANIFEST, read_json
from reldistill.calibration import load_calibration
from reldistill.config import DataConfig
from reldistill.distill.train import training_summary
from reldistill.errors import UserError
from reldistill.eval.calibration import calibration_block
from reldistill.eval.inputs import EvalInputs, RunDict
from reldistill.eval.metrics import MetricSpec, metric_specs
from reldistill.eval.record import EvalRecord
from reldistill.eval.retrievers import catalog_vectors, dense_pair_scores
from reldistill.eval.teacher_scores import TeacherScoreCache, cached_reranker
from reldistill.index.lexical import BM25Index
from reldistill.models import resolve_model
from reldistill.recipe.eval import EvalConfig
from reldistill.recipe.retrieval import IndexConfig, SearchConfig
from reldistill.retrieval.pipeline import SearchPipeline
from reldistill.retrieval.serving import Serving
from reldistill.run_layout import RunDir, index_dir_of
from reldistill.settings import Runtime
from reldistill.student import load_student
from reldistill.student.catalog_vectors import catalog_digest
from reldistill.student.identity import model_identity

STUDENT_DIRS = {"dense-human": "student-human", "dense-distilled": "student"}  # system: run stage directory


def base_student_name(run: RunDir, cfg: EvalConfig) -> str:
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


def _trained(path: str | Path) -> dict | None:
    """What the student at ``path`` trained on (its manifest's :func:`training_summary`); None for a base model."""
    manifest = Path(path) / MANIFEST
    return training_summary(read_json(manifest)) if manifest.is_file() else None


@dataclasses.dataclass
class Served:
    """The served configuration's row on the report split: its name there and the parts it is compared with."""

    serving: Serving
    name: str  # "served: <serving name>"
    parts: dict[str, RunDict]


class SystemRuns:
    """The ranked lists of every present system on one split (``runs[task][system]``), through the served pipelines.

    ``serve``: the served student is loaded even when no system asked for names it (a serving is chosen or given);
    ``runtime``: how the students and the teacher run.
    """

    def __init__(self, run: RunDir, data_cfg: DataConfig, cfg: EvalConfig, search_cfg: SearchConfig,
                 index_cfg: IndexConfig | None, inputs: EvalInputs, products: pd.DataFrame, record: EvalRecord,
                 serve: bool, *, runtime: Runtime | None = None):
        self.run = run
        self.runtime = runtime or Runtime()
        self.data_cfg = data_cfg
        self.cfg = cfg
        self.search_cfg = search_cfg
        self.index_cfg = index_cfg
        self.inputs = inputs
        self.products = products
        self.record = record
        self.serve = serve
        self.row_of = inputs.row_of
        self.specs: list[MetricSpec] = metric_specs(data_cfg.gains, cfg.relevant_labels, cfg.ndcg_k, cfg.depth, cfg.mrr_k)
        self.runs: dict[str, dict[str, RunDict]] = {"retrieval": {}, "task1": {}}
        self.pipes: dict[str, SearchPipeline] = {}  # dense system -> SearchPipeline
        self.vectors: dict[str, np.ndarray] = {}  # dense system -> catalog vectors (Task 1)
        self.teacher_cache: TeacherScoreCache | None = None
        self.bm25: BM25Index | None = None

    def wants(self, system: str) -> bool:
        """Whether ``system`` was asked for (``eval.systems``; every system by default)."""
        return self.cfg.systems is None or system in self.cfg.systems

    def served_student(self) -> str:
        """The student the run's index serves: the distilled one when the run has it, else the base one."""
        return "dense-distilled" if self.run.done("student") else "dense-base"

    def needs_student(self, system: str) -> bool:
        hybrid = "hybrid-" + system.split("-", 1)[1]
        served = system == self.served_student()
        rerank = self.wants("hybrid+rerank") and self.run.done("teacher")
        return self.wants(system) or self.wants(hybrid) or (served and (rerank or self.serve))

    def teacher_ready(self) -> bool:
        """Whether the run has a finished teacher (its score cache opened on first call)."""
        tdir = self.run.teacher
        if self.teacher_cache is None and (tdir / MANIFEST).is_file():
            self.teacher_cache = TeacherScoreCache(tdir, self.run.eval_cache, self.cfg.teacher_dtype, self.cfg.teacher_batch,
                                                   runtime=self.runtime)
        return self.teacher_cache is not None

    def task1_run(self, scores: np.ndarray) -> RunDict:
        """Scores of the judged pairs (in ``inputs.judged`` order) as a run dict."""
        out: RunDict = {}
        for (q, p), s in zip(self.inputs.judged[["query_id", "product_id"]].itertuples(index=False), scores):
            out.setdefault(q, {})[p] = float(s)
        return out

    # -- the served engine -------------------------------------------------------------------------
    def students(self) -> dict[str, tuple[str, str]]:
        """{system: (model name or folder, description)} for the students this run has."""
        out = {"dense-base": (base_student_name(self.run, self.cfg), "base student (no fine-tuning)")}
        for system, sub in STUDENT_DIRS.items():
            d = self.run.stage_dir(sub)
            if (d / MANIFEST).is_file():
                out[system] = (str(d), f"{sub}/")
            else:
                what = "human-labels-only student" if sub == "student-human" else "distilled student"
                self.record.absent[system] = f"no finished {what} at {d} (no {MANIFEST})"
        return out

    def index_pipeline(self) -> SearchPipeline | None:
        """The run's saved index as a SearchPipeline when it indexes exactly this catalog, else None."""
        index_dir = index_dir_of(self.run.root)
        if not (index_dir / MANIFEST).is_file():
            return None
        pipe = SearchPipeline.from_run(self.run.root, config=self.search_cfg, runtime=self.runtime)
        frame = pipe.catalog.frame()
        ids = frame["product_id"].astype(str).tolist()
        inp = self.inputs
        if catalog_digest(ids, [pipe.catalog.text(p) for p in ids]) != catalog_digest(inp.product_ids, inp.texts):
            self.record.notes["index"] = f"{index_dir} indexes another catalog than this data: pipelines built in memory"
            return None
        self.record.notes["index"] = {"dir": str(index_dir), "kind": pipe.dense.kind, "student": pipe.student_id}
        return pipe

    def build_pipelines(self) -> None:
        """One SearchPipeline per student (the saved index for the student it was built with; the others share
        its BM25 and catalog and get an index of the same kind), each encoding a query once."""
        inp = self.inputs
        main = self.index_pipeline()
        for system, (name, desc) in self.students().items():
            if not self.needs_student(system):
                continue
            t0 = time.perf_counter()
            try:
                reuse = main is not None and main.student_id == model_identity(name)
                model = main.student if reuse else load_student(name, runtime=self.runtime)
            except UserError as e:
                self.record.absent[system] = f"{desc} {name!r} cannot be loaded: {e}"
                continue
            path = resolve_model(name, self.runtime).path
            emb, source = catalog_vectors(system, model, path, inp.product_ids, inp.texts,
                                          self.run.eval_cache, self.cfg.batch_size, index_dir_of(self.run.root), name)
            self.vectors[system] = emb
            if reuse:
                pipe = main
            elif main is not None:
                pipe = main.with_student(model, name=system, vectors=emb)
            else:
                judged = inp.judged if "esci_label" in inp.judged else None
                pipe = SearchPipeline.from_data(self.products, judged, model, vectors=emb, index_config=self.index_cfg,
                                                config=self.search_cfg, name=system,
                                                teacher_dir=self.run.teacher if self.run.done("teacher") else None,
                                                runtime=self.runtime)
                main = pipe  # the other students share its BM25 and catalog
            pipe.query_vectors = {}
            self.pipes[system] = pipe
            self.record.notes.setdefault("students", {})[system] = {
                "model": name, "catalog_embeddings_cached": source != "encoded", "catalog_embeddings_from": source,
                "index": "saved index" if pipe is main and main.index_dir is not None else f"in memory ({pipe.dense.kind})",
                "index_kind": pipe.dense.kind, "trained": _trained(path)}
            self.record.add_time(f"{system}_s", t0)

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
    def retrieval(self) -> None:
        """Full-catalog retrieval: BM25, each student dense and (but the human-labels-only one) hybrid."""
        inp, ret, record = self.inputs, self.runs["retrieval"], self.record
        first = next(iter(self.pipes), None)
        if first is None:
            self.bm25 = record.timed("bm25_index_s", BM25Index.build, inp.product_ids, inp.texts)
        else:
            self.bm25 = self.pipes[first].bm25
        if self.wants("bm25"):
            if first is not None:
                ret["bm25"] = record.timed("bm25_search_s", self.search, first, inp, "bm25")
            else:
                ids, sc = self.bm25.search(inp.queries, self.cfg.depth)
                ret["bm25"] = {q: dict(zip(i, s)) for q, i, s in zip(inp.query_ids, ids, sc)}
        for system in self.pipes:
            t0 = time.perf_counter()
            ret[system] = self.search(system, inp, "dense")
            hybrid = "hybrid-" + system.split("-", 1)[1]
            if system != "dense-human":
                ret[hybrid] = self.search(system, inp, "hybrid")
            record.add_time(f"{system}_search_s", t0)
        for student in ("dense-base", "dense-distilled"):
            if student not in self.pipes:
                record.absent["hybrid-" + student.split("-", 1)[1]] = f"needs {student}, which is absent"

    def task1(self) -> None:
        """ESCI Task 1: BM25 and each student score every judged pair of the split."""
        inp = self.inputs
        queries, pids = inp.judged["query"].astype(str).tolist(), inp.judged["product_id"].astype(str).tolist()
        self.runs["task1"]["bm25"] = self.task1_run(self.bm25.score_pairs(queries, pids))
        rows = [self.row_of[p] for p in pids]
        for system, pipe in self.pipes.items():
            scores = dense_pair_scores(pipe._encode(queries), self.vectors[system], rows)
            self.runs["task1"][system] = self.task1_run(scores)
            self.calibrated(system, self.run.stage_dir(STUDENT_DIRS[system]) if system in STUDENT_DIRS else None, scores, False)

    def teacher(self) -> None:
        """The teacher alone on Task 1 (and the LLM without its prior when it has one), its MSE to the soft labels."""
        inp, record = self.inputs, self.record
        if not (self.wants("teacher") or self.wants("hybrid+rerank")):
            return
        if not self.teacher_ready():
            reason = f"no finished teacher at {self.run.teacher} (no {MANIFEST})"
            record.absent["teacher"] = reason
            record.absent["hybrid+rerank"] = reason
            return
        t0 = time.perf_counter()
        texts = [inp.texts[self.row_of[p]] for p in inp.judged["product_id"]]
        judged_scores = self.teacher_cache.scores(inp.judged["query"].astype(str).tolist(), texts, progress=True)
        self.runs["task1"]["teacher"] = self.task1_run(judged_scores)
        self.calibrated("teacher", self.run.teacher, judged_scores, True)
        if read_json(self.run.teacher / MANIFEST).get("prior"):  # the blend hides the LLM's own judgement: show it too
            alone = TeacherScoreCache(self.run.teacher, self.run.eval_cache, self.cfg.teacher_dtype, self.cfg.teacher_batch,
                                      prior=False, runtime=self.runtime)
            self.runs["task1"]["teacher (LLM alone)"] = self.task1_run(alone.scores(inp.judged["query"].astype(str).tolist(), texts))
        soft = inp.judged["soft_label"].to_numpy(dtype=np.float64)
        labels = inp.judged["esci_label"].astype(str)
        record.notes["teacher_mse"] = {
            "mse": float(np.mean((judged_scores - soft) ** 2)),
            "pairs": int(len(soft)),
            "mean_score_by_label": {lab: float(judged_scores[(labels == lab).to_numpy()].mean())
                                    for lab in sorted(labels.unique())},
        }
        if self.served_student() not in self.pipes:
            record.absent["hybrid+rerank"] = f"needs {self.served_student()}, which is absent"
        record.notes["teacher"] = {"task1_pairs": len(judged_scores), "dtype": self.cfg.teacher_dtype}
        record.add_time("teacher_s", t0)

    def calibrated(self, system: str, model_dir: Path | None, scores: np.ndarray, raw_is_probability: bool) -> None:
        """ECE / Brier / reliability of ``system``'s calibrated probabilities on the report split's judged pairs."""
        cal = load_calibration(model_dir)
        if cal is None:
            return
        judged = self.inputs.judged
        block = calibration_block(cal, scores, judged["esci_label"].to_numpy(), raw_is_probability, judged["query_id"].to_numpy())
        block["served_student"] = system == self.served_student()
        self.record.notes.setdefault("calibration", {})[system] = block

    def rerank_row(self, serving: Serving | None) -> None:
        """``hybrid-<student>+rerank`` on the report split with what `search --mode rerank` runs: ``serving``'s
        settings (the dev-best rerank when dev chose another mode), else the recipe's ``search:``."""
        student = self.served_student()
        if not (self.wants("teacher") or self.wants("hybrid+rerank")) or not self.teacher_ready() or student not in self.pipes:
            return
        t0 = time.perf_counter()
        cfg = serving.search_config(self.search_cfg) if serving is not None else self.search_cfg
        self.runs["retrieval"][f"hybrid-{student.split('-', 1)[1]}+rerank"] = self.search(
            student, self.inputs, "rerank", cfg.weights, cfg.rerank_k, rerank_weight=cfg.rerank_weight)
        self.record.notes["teacher"].update(rerank_k=cfg.rerank_k, rerank_weight=cfg.rerank_weight,
                                            rerank_weights=dict(cfg.weights))
        self.record.timings["teacher_s"] = round(self.record.timings.get("teacher_s", 0.0) + time.perf_counter() - t0, 2)

    def served(self, serving: Serving) -> Served | None:
        """The dev-chosen (or given) configuration on the report split, and its parts to show what it adds; None
        (recorded as absent) when the run lacks what it needs."""
        s, student, ret = serving, self.served_student(), self.runs["retrieval"]
        if student not in self.pipes or (s.mode == "rerank" and not self.teacher_ready()):
            self.record.absent[f"served: {s.name}"] = f"needs {student}" + (" and the teacher" if s.mode == "rerank" else "")
            return None
        tag = student.split("-", 1)[1]
        name = f"served: {s.name}"
        ret[name] = self.search(student, self.inputs, s.mode, s.weights, s.rerank_k, rerank_weight=s.rerank_weight)
        parts = {k: ret[k] for k in ("bm25", student) if k in ret}
        if s.mode == "rerank":
            default = dict(self.search_cfg.weights) == dict(s.weights)
            parts[f"hybrid-{tag}" if default else f"hybrid({','.join(f'{k}={v:g}' for k, v in sorted(s.weights.items()))})"] = (
                ret[f"hybrid-{tag}"] if default else self.search(student, self.inputs, "hybrid", s.weights))
        parts = {k: v for k, v in parts.items() if k != name}
        for k, v in parts.items():
            ret.setdefault(k, v)
        return Served(serving, name, parts)

    def note_teacher_scores(self) -> None:
        """How many teacher scores came from the cache, were scored now, were reused."""
        cache = self.teacher_cache
        if cache is not None:
            self.record.notes["teacher_scores"] = {"cached_before": cache.loaded_from_cache, "scored_now": cache.scored,
                                                   "reused": cache.hits}
