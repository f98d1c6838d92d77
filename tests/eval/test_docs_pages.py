"""`reldistill report`: docs/results.md and docs/benchmarks.md rendered from a run's files (never typed), each
naming the command, commit and CPU its figures come from. Fixtures: the report.json and bench.json of a tiny run
(tiny random teacher and student on a slice of the ESCI sample), as `reldistill eval` and `reldistill bench` wrote them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.readme_testkit import DOCS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def run_with_files(tmp_path) -> Path:
    run = tmp_path / "runs" / "demo"
    (run / "eval").mkdir(parents=True)
    shutil.copy(FIXTURES / "report-tiny.json", run / "report.json")
    shutil.copy(FIXTURES / "bench-tiny.json", run / "eval" / "bench.json")
    return run


def test_pages_show_the_run_figures_and_where_they_come_from(run_with_files, tmp_path):
    from reldistill.generated_pages import MARKER
    from reldistill.workflow.pages import write_pages

    report = json.loads((run_with_files / "report.json").read_text())
    bench = json.loads((run_with_files / "eval" / "bench.json").read_text())
    written = write_pages(tmp_path / "docs", run_with_files, render_command="reldistill report --run runs/demo --docs docs")
    assert sorted(p.name for p in written) == ["benchmarks.md", "recipe.md", "results.md"]

    results = (tmp_path / "docs" / "results.md").read_text()
    assert results.startswith("# Results\n\n" + MARKER)
    prov = report["provenance"]
    for needle in ("`reldistill report --run runs/demo --docs docs`", f"`{prov['command']}`", prov["commit"], prov["cpu"]):
        assert needle in results, needle
    served, dev = report["served"], report["dev"]
    assert f"**{served['name']}**" in results and f"{served['metrics']['nDCG@10']:.4f}" in results
    assert f"Dev comparison ({dev['n_queries']} queries" in results  # the dev choice with its dev query count
    assert f"on {served['dev']['queries']} dev queries" in results
    for system, metrics in report["systems"].items():  # every system's figure, as the eval report renders it
        assert f"| {system} | {metrics['nDCG@10']:.4f}" in results, system
    assert "## Paired tests" in results and "significantly better than BM25" in results
    assert "Timings (s)" not in results and "eval/metrics.png" not in results  # paths into the run do not resolve here

    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert page.startswith("# Benchmarks\n\n" + MARKER)
    bprov = bench["provenance"]
    for needle in (f"`{bprov['command']}`", bprov["commit"], bench["machine"]["cpu"], "RELDISTILL_STUDENT_BACKEND=torch"):
        assert needle in page, needle
    fig = bench["figures"]
    for key in ("query_encode_speedup", "catalog_encode_speedup", "teacher_prefix_kv_speedup_vs_fp32", "rerank_prefix_kv_speedup"):
        assert f"**{fig[key]:.2f}×**" in page, key  # same-run ratios, read from the JSON
    assert f"{fig['query_encode_p50_ms_torch']:,.2f} ms" in page
    assert "| teacher scoring (float32) |" in page  # bench's own full table follows


def test_pages_without_provenance_say_so(run_with_files, tmp_path):
    """Files written before the provenance block still render, saying what was not recorded."""
    from reldistill.eval.pages import results_page

    report = json.loads((run_with_files / "report.json").read_text())
    del report["provenance"]
    page = results_page(report, "runs/demo/report.json", "reldistill report --run runs/demo --docs docs")
    assert "- Commit: `not recorded`" in page and "- CPU: not recorded" in page


@pytest.mark.slow
def test_report_command(cli, run_with_files, tmp_path):
    docs = tmp_path / "docs"
    proc = cli("report", "--run", run_with_files, "--docs", docs)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name for p in docs.iterdir()} == {"results.md", "benchmarks.md", "recipe.md"}
    assert f"Rendered by `reldistill report --run {run_with_files} --docs {docs}`" in (docs / "results.md").read_text()


def test_missing_or_foreign_files_are_one_clear_error(run_with_files, tmp_path):
    from reldistill.errors import UserError
    from reldistill.workflow.pages import write_pages

    (run_with_files / "report.json").unlink()
    with pytest.raises(UserError, match="report.json does not exist — evaluate the run first: `reldistill eval --run"):
        write_pages(tmp_path / "docs", run_with_files)
    bad = tmp_path / "bench.json"
    bad.write_text("{}")
    with pytest.raises(UserError, match="not the output of `reldistill bench"):
        write_pages(tmp_path / "docs", bench=bad)
    bad.write_text("{not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        write_pages(tmp_path / "docs", bench=bad)


def test_provenance_names_the_command_and_keeps_secrets_out():
    from reldistill.provenance import command_line, provenance
    from reldistill.settings import Runtime

    assert command_line(["/x/.venv/bin/reldistill", "bench", "--run", "runs/demo"]) == "reldistill bench --run runs/demo"
    assert command_line(["/x/workflow/cli/__main__.py", "eval", "--run", "a b"]) == "reldistill eval --run 'a b'"
    runtime = Runtime.from_env({"RELDISTILL_CPU_BF16": "0", "RELDISTILL_API_KEY": "s3cret-key", "HOME": "/root",
                                "OMP_NUM_THREADS": "2"})
    assert provenance([], runtime)["env"] == {"OMP_NUM_THREADS": "2", "RELDISTILL_CPU_BF16": "0"}
    assert runtime.api_key == "s3cret-key" and "s3cret" not in repr(runtime)
    p = provenance(["reldistill", "demo"], Runtime())
    assert p["command"] == "reldistill demo" and p["cpu"] and isinstance(p["cpu_flags"], list)
    assert p["commit"] is None or len(p["commit"]) == 40


@pytest.mark.parametrize("name", ["results.md", "benchmarks.md", "recipe.md"])
def test_checked_in_pages_are_generated(name):
    from reldistill.generated_pages import MARKER

    text = (DOCS / name).read_text(encoding="utf-8")
    assert MARKER in text or "generated by `reldistill report --docs docs`" in text, f"docs/{name} must come from `reldistill report`"
