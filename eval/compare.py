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

import time
from pathlib import Path
from typing import Any

from reldistill.config import DataConfig
from reldistill.eval.assemble import build_report, drop_unselected, headline, score
from reldistill.eval.dev import choose_on_dev
from reldistill.eval.inputs import checked_split, load_data
from reldistill.eval.record import EvalRecord
from reldistill.eval.systems import Served, SystemRuns
from reldistill.recipe.eval import EvalConfig
from reldistill.recipe.retrieval import IndexConfig, SearchConfig
from reldistill.retrieval.serving import Serving
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime


class Evaluation:
    """One evaluation of a run directory (see module docstring); ``run_all()`` returns the report dict.

    The parts: the system runs (reldistill.eval.systems), the served configuration chosen on dev
    (reldistill.eval.dev), the report assembled from both (reldistill.eval.assemble).
    """

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
        self.record = EvalRecord()
        self.serving: Serving | None = serving
        self.chose = False  # whether this evaluation chose self.serving on dev
        self.dev_report: dict[str, Any] | None = None
        self.systems: SystemRuns | None = None  # the system runs, once run_all has loaded the data
        self.served: Served | None = None  # the served configuration's row on the report split

    def run_all(self) -> dict[str, Any]:
        """Build every present system's runs, score them, and return the report dict (nothing written)."""
        t0 = time.perf_counter()
        record = self.record
        data, examples = record.timed("load_data_s", load_data, self.data_cfg)
        inputs = checked_split(data, examples, self.cfg.split, self.cfg.max_queries)
        systems = self.systems = SystemRuns(self.run, self.data_cfg, self.cfg, self.search_cfg, self.index_cfg, inputs,
                                            data.products, record, serve=self.choose_serving or self.serving is not None,
                                            runtime=self.runtime)
        record.timed("pipelines_s", systems.build_pipelines)
        systems.retrieval()
        systems.task1()
        systems.teacher()
        if self.choose_serving and systems.served_student() in systems.pipes:
            choice = choose_on_dev(systems, data, examples)
            if choice is not None:
                self.serving, self.chose, self.dev_report = choice.serving, True, choice.report
        systems.rerank_row(self.serving)
        self.served = systems.served(self.serving) if self.serving is not None else None
        if self.served is None:
            self.serving = None
        drop_unselected(systems, self.served)
        systems.note_teacher_scores()
        scored = record.timed("metrics_s", score, systems)
        record.timings["total_s"] = round(time.perf_counter() - t0, 2)
        return build_report(systems, scored, headline(systems, scored, self.served), self.dev_report)
