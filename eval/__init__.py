"""Evaluation: IR metrics, system comparison, reports, speed benchmarks.

Public API (heavy libraries load lazily):
``evaluate_run(run_dir, data_cfg, cfg, search_cfg, index_cfg) -> dict`` — what `reldistill eval` does: evaluate
every system of a run, choose the served configuration on dev, write report.json / report.md / eval/;
``run_bench(cfg, data_cfg, run=None)``. Their settings are the recipe's sections (``reldistill.recipe``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reldistill.recipe.eval import BenchConfig, EvalConfig

__all__ = ["evaluate_run", "run_bench"]


def evaluate_run(run_dir: str | Path, data_cfg=None, cfg: EvalConfig | None = None, search_cfg=None,
                 index_cfg=None, *, runtime=None) -> dict[str, Any]:
    """What `reldistill eval` does: evaluate every system ``run_dir`` holds through its served pipelines, choose the
    served configuration on dev (``serving.json``) and write the reports; returns what report.json holds.

    The settings are the recipe's sections (``recipe.data``, ``recipe.eval``, ``recipe.search``, ``recipe.index``);
    those left out hold their defaults; ``runtime`` (a ``reldistill.settings.Runtime``) says how the models run.
    """
    from reldistill.config import DataConfig
    from reldistill.eval.report import evaluate_run as _evaluate
    from reldistill.run_layout import RunDir

    return _evaluate(RunDir(run_dir), data_cfg or DataConfig(), cfg or EvalConfig(), search_cfg, index_cfg, runtime=runtime)


def run_bench(cfg: BenchConfig | None = None, data_cfg=None, run: str | Path | None = None) -> dict[str, Any]:
    """All speed benchmarks (see reldistill.bench.suite); the result's ``markdown`` is the table."""
    from reldistill.config import DataConfig
    from reldistill.bench.suite import run_bench as _run

    return _run(cfg or BenchConfig(), data_cfg or DataConfig(), Path(run) if run is not None else None)
