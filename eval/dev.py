"""The served configuration chosen on dev (never on the report split): every configuration of the served pipeline
— mode, RRF weights of a small grid, rerank on/off, rerank_k and the rerank blend — scored on the dev queries
carved from train, then eval.choose's rule picks the simplest one whose gain is real."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from typing import Any

import pandas as pd

from reldistill.data.queries import normalise_query
from reldistill.eval.choose import Candidate, choose
from reldistill.eval.inputs import EvalInputs, RunDict, split_inputs
from reldistill.eval.metrics import evaluate, to_qrels, to_run
from reldistill.eval.systems import SystemRuns
from reldistill.retrieval.serving import Serving
from reldistill.run_layout import RunDir

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DevChoice:
    """The configuration chosen on dev (its ``chosen_on`` filled in) and the dev comparison the report shows."""

    serving: Serving
    report: dict[str, Any]


def seeded_subset(query_ids: list[str], n: int, seed: int) -> list[str]:
    """``n`` whole queries of ``query_ids``, chosen by a seeded hash (stable across runs and machines)."""
    if len(query_ids) <= n:
        return list(query_ids)
    key = lambda q: hashlib.sha256(f"{seed}\0rerank-dev\0{q}".encode()).hexdigest()  # noqa: E731
    keep = set(sorted(query_ids, key=key)[:n])
    return [q for q in query_ids if q in keep]


def weights_of(dense_weight: float) -> dict[str, float]:
    """The RRF weights of one grid point: BM25 at 1, the student at ``dense_weight``."""
    return {"bm25": 1.0, "dense": float(dense_weight)}


def dev_leaks(run: RunDir, dev: EvalInputs) -> set[str]:
    """Dev queries (by id or normalised text) among the run's mined training candidates: must be none."""
    cands = run.candidates_file
    if not cands.is_file():
        return set()
    df = pd.read_parquet(cands, columns=["query_id", "query"])
    seen_ids, seen_text = set(df["query_id"].astype(str)), set(map(normalise_query, df["query"]))
    return {q for q, t in zip(dev.query_ids, dev.queries) if str(q) in seen_ids or normalise_query(t) in seen_text}


class DevTable:
    """The dev comparison being filled: the candidates, their rows in the table and their ranked lists."""

    def __init__(self, systems: SystemRuns, inp: EvalInputs):
        self.systems = systems
        self.inp = inp
        self.qrels = to_qrels(inp.qrels)
        self.ndcg = systems.specs[0].name
        self.candidates: list[Candidate] = []
        self.table: dict[str, Any] = {}
        self.runs: dict[str, RunDict] = {}

    def add(self, serving: Serving, run: RunDict, qids: list[str], candidate: bool = True, name: str | None = None) -> Candidate:
        """Score ``run`` on ``qids``; a candidate gets a table row under its name, a reference row goes under ``name``."""
        inp = self.inp
        sub = to_qrels({q: inp.qrels[q] for q in qids}) if len(qids) < len(inp.query_ids) else self.qrels
        means, per = evaluate(sub, to_run(run, serving.name, qids), self.systems.specs)
        c = Candidate(serving, dict(zip(sub.keys(), map(float, per[self.ndcg]))))
        self.runs[serving.name] = run
        if candidate:
            self.candidates.append(c)
            self.table[serving.name] = {**means, "queries": len(qids)}
        else:
            self.table[name] = {**means, "queries": len(qids), "note": "the rerank rows' queries: what rerank is measured against"}
        return c

    def add_other_students(self, student: str) -> None:
        """The other students on dev too (reported; the run's index serves only ``student``)."""
        systems, inp = self.systems, self.inp
        for other in systems.pipes:
            if other != student:
                for mode in ("dense",) + (("hybrid",) if other == "dense-base" else ()):
                    name = other if mode == "dense" else "hybrid-base"
                    run = to_run(systems.search(other, inp, mode), name, inp.query_ids)
                    self.table[name] = {**evaluate(self.qrels, run, systems.specs)[0], "queries": len(inp.query_ids),
                                        "not_served": True}


def dev_candidates(systems: SystemRuns, inp: EvalInputs, student: str) -> tuple[list[Candidate], dict[str, Any]]:
    """Every configuration of the served pipeline the dev split compares, with its dev metrics."""
    cfg = systems.cfg
    dev = DevTable(systems, inp)
    for mode in ("bm25", "dense"):
        dev.add(Serving(mode, weights=dict(systems.search_cfg.weights)), systems.search(student, inp, mode), inp.query_ids)
    hybrids = [dev.add(Serving("hybrid", weights=weights_of(w)), systems.search(student, inp, "hybrid", weights_of(w)),
                       inp.query_ids) for w in cfg.weight_grid]
    dev.add_other_students(student)
    if systems.teacher_ready():
        best = max(hybrids, key=lambda c: c.mean)
        sub = seeded_subset(inp.query_ids, cfg.dev_rerank_queries, systems.data_cfg.seed)
        systems.record.notes["dev_rerank_queries"] = len(sub)
        if len(sub) < len(inp.query_ids):  # the first stages on the same queries, so rerank reads against them
            for c in (best, next(c for c in dev.candidates if c.serving.mode == "dense")):
                dev.add(c.serving, dev.runs[c.serving.name], sub, candidate=False,
                        name=f"{c.serving.name} on the {len(sub)} rerank queries")
        for rk in cfg.rerank_k_grid:
            for rw in cfg.rerank_weight_grid:  # the teacher's scores are cached: a blend costs no forward
                serving = Serving("rerank", weights=dict(best.serving.weights), rerank_k=rk, rerank_weight=rw)
                dev.add(serving, systems.search(student, inp, "rerank", serving.weights, rk, query_ids=sub, rerank_weight=rw), sub)
    return dev.candidates, dev.table


def dev_inputs(systems: SystemRuns, data, examples: pd.DataFrame) -> tuple[EvalInputs, set[str]]:
    """The dev split without the queries the student trained on (warned about), and those left out."""
    dev = split_inputs(data, examples, systems.cfg.choose_on)
    leaked = dev_leaks(systems.run, dev)
    if leaked:
        log.warning("%d dev queries appear among the student's training candidates: left out of the choice", len(leaked))
        keep = [i for i, q in enumerate(dev.query_ids) if q not in leaked]
        dev = dataclasses.replace(dev, query_ids=[dev.query_ids[i] for i in keep], queries=[dev.queries[i] for i in keep],
                                  qrels={q: d for q, d in dev.qrels.items() if q not in leaked})
    return dev, leaked


def choose_on_dev(systems: SystemRuns, data, examples: pd.DataFrame) -> DevChoice | None:
    """The served configuration chosen on ``eval.choose_on`` (the served student's pipeline), with the dev table and
    the decisions that chose it; None (noted) when the split has no queries."""
    cfg, notes = systems.cfg, systems.record.notes
    student = systems.served_student()
    dev, leaked = dev_inputs(systems, data, examples)
    if not dev.query_ids:
        notes["serving"] = f"no {cfg.choose_on} queries (data.dev_fraction={systems.data_cfg.dev_fraction}): nothing chosen"
        return None
    t0 = time.perf_counter()
    cands, table = dev_candidates(systems, dev, student)
    chosen, why = choose(cands, cfg.min_gain, cfg.max_p, cfg.stat_test)
    ndcg = systems.specs[0].name
    reranks = [c for c in cands if c.serving.mode == "rerank"]
    if chosen.serving.mode != "rerank" and reranks:  # what `mode=rerank` requests get: the best rerank on dev
        r = max(reranks, key=lambda c: c.mean)
        row = table[r.serving.name]
        chosen.serving.rerank = {"rerank_k": r.serving.rerank_k, "rerank_weight": r.serving.rerank_weight,
                                 "first_stage_on_dev": dict(r.serving.weights), "name": r.serving.name,
                                 ndcg: row[ndcg], "queries": row["queries"]}
        why.append(f"`mode=rerank` requests get the best rerank on dev: rerank@{r.serving.rerank_k}"
                   + ("" if r.serving.rerank_weight is None else f" blended with w={r.serving.rerank_weight:g}")
                   + f" ({ndcg} {row[ndcg]:.4f} on {row['queries']} dev queries)")
    chosen.serving.chosen_on = {
        "split": cfg.choose_on, "queries": len(dev.query_ids), "rerank_queries": notes.get("dev_rerank_queries"),
        "student": student, "metric": ndcg, ndcg: table[chosen.serving.name][ndcg],
        "rule": f"simplest system unless a system with more parts gains ≥ {cfg.min_gain:g} dev {ndcg} with p < {cfg.max_p:g}",
        "decisions": why, "dev_leaks_left_out": len(leaked)}
    report = {"split": cfg.choose_on, "n_queries": len(dev.query_ids), "systems": table, "chosen": chosen.serving.name,
              "decisions": why, "rerank_queries": notes.get("dev_rerank_queries")}
    systems.record.add_time("choose_on_dev_s", t0)
    return DevChoice(chosen.serving, report)
