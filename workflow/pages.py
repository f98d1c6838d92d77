"""`reldistill report`'s pages composed: docs/recipe.md (the recipe dataclasses), docs/results.md (eval's report.json)
and docs/benchmarks.md (bench's JSON) — each package renders its own page; this writes them side by side."""

from __future__ import annotations

from pathlib import Path

from reldistill.artifacts import write_text
from reldistill.bench.pages import BENCHMARKS_FILE, benchmarks_page
from reldistill.eval.pages import RESULTS_FILE, results_page
from reldistill.generated_pages import read_object
from reldistill.recipe.reference import REFERENCE_FILE, render_reference
from reldistill.run_layout import RunDir


def write_pages(docs: Path, run: Path | None = None, bench: Path | None = None,
                render_command: str = "reldistill report --run RUN --docs DOCS") -> list[Path]:
    """Write docs/recipe.md, and with ``run`` docs/results.md (RUN/report.json) and docs/benchmarks.md (``bench``,
    default RUN/eval/bench.json when it exists). Returns the pages written."""
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    written = [docs / REFERENCE_FILE]
    write_text(written[0], render_reference())
    if run is not None:
        rd = RunDir(run)
        report = read_object(rd.report_json, f"evaluate the run first: `reldistill eval --run {run}`")
        write_text(docs / RESULTS_FILE, results_page(report, str(rd.report_json), render_command))
        written.append(docs / RESULTS_FILE)
        bench = bench if bench is not None else (rd.eval / "bench.json" if (rd.eval / "bench.json").is_file() else None)
    if bench is not None:
        data = read_object(Path(bench), "write it with `reldistill bench --run RUN` (RUN/eval/bench.json)")
        write_text(docs / BENCHMARKS_FILE, benchmarks_page(data, str(bench), render_command))
        written.append(docs / BENCHMARKS_FILE)
    return written
