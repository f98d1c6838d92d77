"""`reldistill eval`, `reldistill bench` and `reldistill report` (registered on the root app)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from reldistill.bench import run_bench, write_bench
from reldistill.config import DataConfig
from reldistill.errors import UserError
from reldistill.eval import evaluate_run
from reldistill.eval.report import render_markdown
from reldistill.provenance import command_line
from reldistill.recipe import Recipe, load_recipe, option_help, override
from reldistill.recipe.eval import BenchConfig, EvalConfig
from reldistill.recipe.retrieval import SearchConfig
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime
from reldistill.workflow.pages import write_pages

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (its data: and eval:/bench: sections).")]


def _recipe(config: Path | None, data: Path | None) -> Recipe:
    """The recipe (defaults without ``--config``) with ``--data``."""
    recipe = load_recipe(config)
    if data is None:
        return recipe
    if not data.exists():
        raise UserError(f"--data {data} does not exist — pass an ESCI directory or a CSV/JSONL/parquet table.")
    return dataclasses.replace(recipe, data=override(recipe.data, path=str(data)))


def _quiet() -> None:
    """Silence numba's type-safety chatter from ranx (it is not actionable for a user)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*unsafe cast.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="ranx")


def eval_cmd(
    run: Annotated[Path, typer.Option("--run", help="Run directory (teacher/, student/, student-human/ ...).")],
    data: Annotated[Optional[Path], typer.Option("--data", help=option_help(DataConfig, "path"))] = None,
    split: Annotated[Optional[str], typer.Option("--split", help=option_help(EvalConfig, "split"))] = None,
    config: ConfigOpt = None,
    max_queries: Annotated[Optional[int], typer.Option("--max-queries", help=option_help(EvalConfig, "max_queries"))] = None,
    rerank_k: Annotated[Optional[int], typer.Option("--rerank-k", help=option_help(SearchConfig, "rerank_k"))] = None,
    systems: Annotated[Optional[str], typer.Option("--systems", help=option_help(EvalConfig, "systems"))] = None,
    dev_rerank_queries: Annotated[Optional[int], typer.Option("--dev-rerank-queries", min=1, help="Dev queries the rerank candidates are scored on (default: the size the demo recorded for the run, else the recipe's eval.dev_rerank_queries).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout instead of the tables.")] = False,
) -> None:
    """Compare every system the run holds (BM25, dense students, hybrids, teacher) on one split through the served
    search pipeline; choose the served configuration on dev (serving.json); write reports. With --data other than
    the run's own data the reports go to <run>/eval/other/<data>-<split>/ and the run's report is left alone."""
    _quiet()
    rd = RunDir(run)  # a missing run directory is a UserError before anything loads
    recipe = _recipe(config, data)
    chosen = [x.strip() for x in systems.split(",") if x.strip()] if systems is not None else None
    # the demo's sized choice is kept: eval alone re-decides on as many dev rerank queries as the demo did
    rerank_queries = dev_rerank_queries or rd.recorded_sizes().get("dev_rerank_queries")
    cfg = override(recipe.eval, split=split, max_queries=max_queries, systems=chosen, dev_rerank_queries=rerank_queries)
    report = evaluate_run(rd, recipe.data, cfg, override(recipe.search, rerank_k=rerank_k), recipe.index,
                          runtime=Runtime.from_env(student=recipe.student))  # student: and env: every encode
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(render_markdown(report)))
        typer.echo(f"wrote {report['files']['report_json']} and {report['files']['report_md']}")


def bench_cmd(
    config: ConfigOpt = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="Run directory: time its teacher/ and student/ instead of the base models.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="ESCI-layout directory whose texts are used.")] = None,
    teacher_pairs: Annotated[Optional[int], typer.Option("--teacher-pairs", help=option_help(BenchConfig, "teacher_pairs"))] = None,
    student_docs: Annotated[Optional[int], typer.Option("--student-docs", help=option_help(BenchConfig, "student_docs"))] = None,
    search_queries: Annotated[Optional[int], typer.Option("--search-queries", help=option_help(BenchConfig, "search_queries"))] = None,
    index_docs: Annotated[Optional[int], typer.Option("--index-docs", help=option_help(BenchConfig, "index_docs"))] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write bench.json and bench.md here (default: <run>/eval/ with --run).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of the table.")] = False,
) -> None:
    """Speed benchmarks on this machine: teacher fp32 vs bf16 (with matmul-peak fraction), student encoding,
    search latency per mode, index build time and memory; one markdown table, every figure measured now."""
    recipe = _recipe(config, data)
    cfg = override(recipe.bench, teacher_pairs=teacher_pairs, student_docs=student_docs, search_queries=search_queries,
                   index_docs=index_docs)
    if run is not None and not run.is_dir():
        raise UserError(f"run directory {run} does not exist — pass an existing --run or leave it out.")
    result = run_bench(cfg, recipe.data, run, runtime=Runtime.from_env(student=recipe.student))
    target = out or (RunDir(run).eval if run is not None else None)
    if target is not None:
        write_bench(target, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        typer.echo(result["markdown"])


def report_cmd(
    docs: Annotated[Path, typer.Option("--docs", help="Folder of the pages (the repo's docs/).")],
    run: Annotated[Optional[Path], typer.Option("--run", help="Run whose report.json (and eval/bench.json) the pages show.")] = None,
    bench: Annotated[Optional[Path], typer.Option("--bench", help="JSON of `reldistill bench` (default: <run>/eval/bench.json when present).")] = None,
) -> None:
    """Render the docs pages from files, never by hand: DOCS/results.md from <run>/report.json, DOCS/benchmarks.md
    from bench JSON, DOCS/recipe.md from the recipe dataclasses. Each page names its command, commit and CPU."""
    if run is not None and not run.is_dir():
        raise UserError(f"run directory {run} does not exist — pass the run that `reldistill demo` or `reldistill eval` wrote.")
    for page in write_pages(docs, run, bench, render_command=command_line()):
        typer.echo(f"wrote {page}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("bench")(bench_cmd)
    app.command("report")(report_cmd)
