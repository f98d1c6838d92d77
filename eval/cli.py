"""`reldistill eval` and `reldistill bench` (registered on the root app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (its data: and eval:/bench: sections).")]


def _quiet() -> None:
    """Silence numba's type-safety chatter from ranx (it is not actionable for a user)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*unsafe cast.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="ranx")


def eval_cmd(
    run: Annotated[Path, typer.Option("--run", help="Run directory (teacher/, student/, student-human/ ...).")],
    data: Annotated[Optional[Path], typer.Option("--data", help="ESCI-layout directory or table to evaluate on (default: the recipe's data.path).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Split to evaluate (default: eval.split, 'test').")] = None,
    config: ConfigOpt = None,
    max_queries: Annotated[Optional[int], typer.Option("--max-queries", help="Only the first N queries of the split (smoke runs).")] = None,
    rerank_k: Annotated[Optional[int], typer.Option("--rerank-k", help="Fused results the teacher reranks per query (default: search.rerank_k).")] = None,
    systems: Annotated[Optional[str], typer.Option("--systems", help="Comma-separated subset, e.g. bm25,dense-base (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout instead of the tables.")] = False,
) -> None:
    """Compare every system the run holds (BM25, dense students, hybrids, teacher) on one split through the served
    search pipeline; choose the served configuration on dev (serving.json); write reports. With --data other than
    the run's own data the reports go to <run>/eval/other/<data>-<split>/ and the run's report is left alone."""
    import dataclasses

    from reldistill.config import DataConfig, from_dict, load_yaml
    from reldistill.errors import UserError
    from reldistill.eval.config import EvalConfig, load_section
    from reldistill.eval.report import evaluate_run, render_markdown
    from reldistill.retrieval.config import IndexConfig, SearchConfig
    from reldistill.run_layout import RunDir
    from reldistill.student.backend import configure_from_recipe

    _quiet()
    RunDir(run)  # a missing run directory is a UserError before anything loads
    data_cfg = from_dict(DataConfig, (load_yaml(config).get("data") if config else None) or {}, f"{config}:data")
    configure_from_recipe(load_yaml(config) if config else None)
    cfg = load_section(config, "eval", EvalConfig)
    search_cfg = load_section(config, "search", SearchConfig)
    index_cfg = load_section(config, "index", IndexConfig)
    if rerank_k is not None:
        search_cfg = dataclasses.replace(search_cfg, rerank_k=rerank_k)
    if data is not None:
        if not data.exists():
            raise UserError(f"--data {data} does not exist — pass an ESCI directory or a CSV/JSONL/parquet table.")
        data_cfg.path = str(data)
    chosen = [x.strip() for x in systems.split(",") if x.strip()] if systems is not None else None
    overrides = {k: v for k, v in (("split", split), ("max_queries", max_queries), ("systems", chosen)) if v is not None}
    if overrides:
        cfg = EvalConfig(**{**dataclasses.asdict(cfg), **overrides})
    report = evaluate_run(RunDir(run), data_cfg, cfg, search_cfg, index_cfg)
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
    teacher_pairs: Annotated[Optional[int], typer.Option("--teacher-pairs", help="Pairs scored per dtype.")] = None,
    student_docs: Annotated[Optional[int], typer.Option("--student-docs", help="Catalog texts encoded per method.")] = None,
    search_queries: Annotated[Optional[int], typer.Option("--search-queries", help="Queries timed per search mode.")] = None,
    index_docs: Annotated[Optional[int], typer.Option("--index-docs", help="Products indexed (default: whole catalog).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write bench.json and bench.md here (default: <run>/eval/ with --run).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of the table.")] = False,
) -> None:
    """Speed benchmarks on this machine: teacher fp32 vs bf16 (with matmul-peak fraction), student encoding,
    search latency per mode, index build time and memory; one markdown table, every figure measured now."""
    import dataclasses

    from reldistill.config import DataConfig, from_dict, load_yaml
    from reldistill.errors import UserError
    from reldistill.eval.bench import run_bench, write_bench
    from reldistill.eval.config import BenchConfig, load_section
    from reldistill.run_layout import RunDir

    from reldistill.student.backend import configure_from_recipe

    cfg = load_section(config, "bench", BenchConfig)
    configure_from_recipe(load_yaml(config) if config else None)  # student.backend of the path timed as "new"
    overrides = {k: v for k, v in (("teacher_pairs", teacher_pairs), ("student_docs", student_docs),
                                   ("search_queries", search_queries), ("index_docs", index_docs)) if v is not None}
    if overrides:
        cfg = BenchConfig(**{**dataclasses.asdict(cfg), **overrides})
    data_cfg = from_dict(DataConfig, (load_yaml(config).get("data") if config else None) or {}, f"{config}:data")
    if data is not None:
        data_cfg.path = str(data)
    if run is not None and not run.is_dir():
        raise UserError(f"run directory {run} does not exist — pass an existing --run or leave it out.")
    result = run_bench(cfg, data_cfg, run)
    target = out or (RunDir(run).eval if run is not None else None)
    if target is not None:
        write_bench(target, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        typer.echo(result["markdown"])


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("bench")(bench_cmd)
