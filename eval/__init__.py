"""Evaluation: IR metrics, system comparison, reports, speed benchmarks.

Public API (heavy libraries load lazily):
``evaluate_run(run_dir, data_cfg=None, cfg=None) -> dict`` — evaluate every system of a run and write
report.json / report.md / eval/; ``run_bench(cfg, data_cfg, run=None)``. Their settings are the recipe's
``eval:`` and ``bench:`` sections (``reldistill.recipe.eval``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reldistill.recipe.eval import BenchConfig, EvalConfig

__all__ = ["evaluate_run", "run_bench"]


def evaluate_run(run_dir: str | Path, data_cfg=None, cfg: EvalConfig | None = None) -> dict[str, Any]:
    """Evaluate every system ``run_dir`` holds and write its reports; returns what report.json holds."""
    from reldistill.config import DataConfig
    from reldistill.eval.compare import Evaluation
    from reldistill.eval.report import write_report
    from reldistill.run_layout import RunDir

    run = RunDir(run_dir)
    return write_report(run, Evaluation(run.root, data_cfg or DataConfig(), cfg or EvalConfig()).run_all())


def run_bench(cfg: BenchConfig | None = None, data_cfg=None, run: str | Path | None = None) -> dict[str, Any]:
    """All speed benchmarks (see reldistill.eval.bench); the result's ``markdown`` is the table."""
    from reldistill.config import DataConfig
    from reldistill.eval.bench import run_bench as _run

    return _run(cfg or BenchConfig(), data_cfg or DataConfig(), Path(run) if run is not None else None)
