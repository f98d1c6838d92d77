"""The generated docs page of an evaluation: docs/results.md, rendered from a run's report.json — every figure read
from the file, naming the command that renders it and the command, commit and CPU its figures come from."""

from __future__ import annotations

from typing import Any

from reldistill.eval.report import render_markdown
from reldistill.generated_pages import MARKER, source_lines

RESULTS_FILE = "results.md"


def results_page(report: dict[str, Any], report_path: str, render_command: str) -> str:
    """docs/results.md: the eval report's headline, dev choice, tables and significance, with where they come from."""
    body = render_markdown(report).splitlines()
    # the report's own title becomes the page's subtitle; paths into the run directory do not resolve from docs/
    body = [line for line in body[1:] if not line.startswith(("Plots: ", "Timings (s): "))]
    while body and not body[0].strip():
        body.pop(0)
    out = ["# Results", "", MARKER, "",
           f"Rendered by `{render_command}` from `{report_path}` (split `{report['split']}`, "
           f"{report['n_queries']} queries). The figures come from:", ""]
    out += source_lines(report.get("provenance")) + [""]
    return "\n".join(out + body).rstrip() + "\n"
