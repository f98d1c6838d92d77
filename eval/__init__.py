"""Evaluation: IR metrics, system comparison through the served pipelines, the dev choice of the served
configuration, reports.

Public API: ``evaluate_run(run_dir, data_cfg, cfg, search_cfg, index_cfg, *, runtime) -> dict`` — what
`reldistill eval` does: evaluate every system of a run, choose the served configuration on dev, write report.json /
report.md / eval/. Its settings are the recipe's sections (``reldistill.recipe``); ``runtime`` (a
``reldistill.settings.Runtime``) says how the models run. Heavy libraries load when it runs. The speed benchmarks are
a peer package: ``reldistill.bench.run_bench``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reldistill.artifacts import staged_commit
from reldistill.config import DataConfig
from reldistill.eval.report import other_data_dir, write_report
from reldistill.recipe.eval import EvalConfig
from reldistill.retrieval.serving import read_serving, write_serving
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime

__all__ = ["evaluate_run"]


def evaluate_run(run_dir: str | Path | RunDir, data_cfg: DataConfig | None = None, cfg: EvalConfig | None = None,
                 search_cfg=None, index_cfg=None, *, runtime: Runtime | None = None) -> dict[str, Any]:
    """What `reldistill eval` does: evaluate every system ``run_dir`` holds through its served pipelines, choose the
    served configuration on dev (``serving.json``) and write the reports; returns what report.json holds.

    On the run's own data: report.json / report.md at the run's root, and the configuration chosen on dev
    in ``serving.json``. On other data: everything under ``eval/other/<data>-<split>/`` (the run's own
    report and serving.json untouched), with the run's served configuration as the headline.

    The settings are the recipe's sections (``recipe.data``, ``recipe.eval``, ``recipe.search``, ``recipe.index``);
    those left out hold their defaults; ``runtime`` (a ``reldistill.settings.Runtime``) says how the models run.
    """
    from reldistill.eval.compare import Evaluation  # pandas, ranx and the models: loaded when an eval runs

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    data_cfg, cfg = data_cfg or DataConfig(), cfg or EvalConfig()
    out_dir = other_data_dir(run, data_cfg.path, cfg.split)
    ev = Evaluation(run.root, data_cfg, cfg, search_cfg, index_cfg,
                    serving=read_serving(run.root) if out_dir is not None else None, runtime=runtime)
    result = ev.run_all()
    with staged_commit(out_dir or run.root) as stage:  # reports, eval/ and serving.json replace the old ones as one unit
        report = write_report(run, result, out_dir, stage=stage, runtime=runtime)
        if out_dir is None and ev.chose:
            write_serving(stage, ev.serving)
    return report
