"""Speed benchmarks: `reldistill bench` (matmul peak, teacher scoring per dtype, student encoding, search latency).

Public API: ``run_bench(cfg, data_cfg, run=None, *, runtime=None) -> dict`` — every benchmark measured now on this
machine (the result's ``markdown`` is the table); ``write_bench(directory, result)`` writes bench.json and bench.md.
The settings are the recipe's ``bench:`` and ``data:`` sections (``reldistill.recipe``); ``runtime`` (a
``reldistill.settings.Runtime``) says how the models run. torch loads when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reldistill.bench.table import write_bench
from reldistill.config import DataConfig
from reldistill.recipe.eval import BenchConfig
from reldistill.settings import Runtime

__all__ = ["run_bench", "write_bench"]


def run_bench(cfg: BenchConfig | None = None, data_cfg: DataConfig | None = None,
              run: str | Path | None = None, *, runtime: Runtime | None = None) -> dict[str, Any]:
    """All speed benchmarks (see reldistill.bench.suite); the result's ``markdown`` is the table."""
    from reldistill.bench.suite import run_suite

    return run_suite(cfg or BenchConfig(), data_cfg or DataConfig(), Path(run) if run is not None else None,
                     runtime=runtime)
