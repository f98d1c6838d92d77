"""CLI of the retrieval stage: `reldistill index build`, `reldistill search`, `reldistill serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from reldistill.config import DataConfig
from reldistill.errors import UserError
from reldistill.recipe import Recipe, load_recipe, option_help, override
from reldistill.recipe.retrieval import LOOPBACK_HOSTS, MODES, IndexConfig, SearchConfig, ServeConfig
from reldistill.retrieval.connections import check_port_free, uvicorn_config
from reldistill.run_layout import RunDir, index_dir_of
from reldistill.settings import Runtime

index_app = typer.Typer(help="Build the FAISS + BM25 product index of a run.", no_args_is_help=True)

RunOpt = Annotated[Path, typer.Option("--run", help="Run directory (holds student/ and index/).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="Recipe YAML; its data:, index:, search:, serve: sections are used.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (1 is fastest for single queries on a busy machine).")]


def _recipe(config: Path | None) -> tuple[Recipe, Runtime]:
    """The recipe and the runtime settings its student: section and the environment give (index build, search, serve)."""
    recipe = load_recipe(config)
    return recipe, Runtime.from_env(student=recipe.student)


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


@index_app.command("build")
def index_build_cmd(
    run: RunOpt,
    student: Annotated[Optional[str], typer.Option(help="Student folder or name (default: <run>/student).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help=option_help(DataConfig, "path"))] = None,
    kind: Annotated[Optional[str], typer.Option(help=option_help(IndexConfig, "kind"))] = None,
    config: ConfigOpt = None,
    threads: ThreadsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace <run>/index even when it is not an index directory.")] = False,
) -> None:
    """Encode the catalog with the student and write <run>/index/ (FAISS + BM25 + products + manifest), atomically."""
    from reldistill.retrieval.build import build_index

    recipe, runtime = _recipe(config)
    icfg = override(recipe.index, kind=kind)
    RunDir.for_output(run)  # a file or an artifact as --run is refused; a new run appears only with its index
    _threads(threads)
    data_cfg = override(recipe.data, path=str(data) if data is not None else None)
    out = build_index(run, student, data_cfg, kind=icfg.kind, config=icfg, force=force, runtime=runtime)
    typer.echo(str(out))


def search_cmd(
    query: Annotated[str, typer.Argument(help="The query text.")],
    run: RunOpt,
    mode: Annotated[Optional[str], typer.Option(help="bm25 | dense | hybrid | rerank (hybrid + teacher rerank); default: the run's serving.json (chosen on dev by `reldistill eval`), else hybrid.")] = None,
    k: Annotated[int, typer.Option("--k", help="Number of results.")] = 10,
    rerank_k: Annotated[Optional[int], typer.Option(help=option_help(SearchConfig, "rerank_k"))] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOpt = None,
    threads: ThreadsOpt = 1,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Keep results whose calibrated P(Exact) is at least this probability (needs `reldistill calibrate`).")] = None,
) -> None:
    """Search the run's index and print product ids, titles, scores, calibrated P(Exact) and the rank at each stage."""
    from reldistill.retrieval.pipeline import check_query

    check_query(query)
    if mode is not None and mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}.")
    recipe, runtime = _recipe(config)
    search = recipe.search
    max_k = search.max_k
    if not 1 <= k <= max_k:
        raise UserError(f"--k must be between 1 and {max_k}, got {k}.")
    if rerank_k is not None and not 1 <= rerank_k <= max_k:
        raise UserError(f"--rerank-k must be between 1 and {max_k}, got {rerank_k}.")
    from reldistill.workflow.compose import run_pipeline

    _threads(threads)
    pipe = run_pipeline(run, search, runtime=runtime)
    mode = mode or pipe.default_mode
    res = pipe.search(query, mode=mode, k=k, rerank_k=rerank_k, min_score=min_score)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{mode} · {query!r}" + (" (judged query)" if res.judged else ""), title_justify="left")
    for col in ("#", "product_id", "title", "brand", "score", "P(E)", "P(E|S)", "bm25", "dense", "rrf", "rerank", "label"):
        t.add_column(col, no_wrap=True, overflow="ellipsis", max_width=60 if col == "title" else 24)
    for h in res.results:
        t.add_row(str(h.rank), h.product_id, h.title, h.brand, f"{h.score:.4f}",
                  *(f"{p:.3f}" if p is not None else "-" for p in (h.p_exact, h.p_exact_or_substitute)),
                  *(str(r) if r is not None else "-" for r in (h.bm25_rank, h.dense_rank, h.fused_rank, h.rerank_rank)),
                  h.label or "-")
    out = Console() if typer.get_text_stream("stdout").isatty() else Console(width=160)
    out.print(t)
    out.print(" · ".join(f"{name} {ms:.1f} ms" for name, ms in res.timings_ms.items()), style="dim")


def serve_cmd(
    run: RunOpt,
    host: Annotated[Optional[str], typer.Option(help=option_help(ServeConfig, "host"))] = None,
    port: Annotated[Optional[int], typer.Option(help=option_help(ServeConfig, "port"))] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", help=option_help(ServeConfig, "api_key") + " Prefer $RELDISTILL_API_KEY or --api-key-file: a command line is visible to every user in `ps`.")] = None,
    api_key_file: Annotated[Optional[Path], typer.Option("--api-key-file", help="Read the API key from this file (its first line).")] = None,
    compare: Annotated[Optional[str], typer.Option(help="Second pipeline for the side-by-side page: a run directory with an index, or a student (e.g. minilm-l6, indexed in memory).")] = None,
    allow_remote_without_key: Annotated[bool, typer.Option("--allow-remote-without-key", help=option_help(ServeConfig, "allow_remote_without_key"))] = False,
    trusted_host: Annotated[Optional[list[str]], typer.Option("--trusted-host", help=option_help(ServeConfig, "trusted_hosts"))] = None,
    config: ConfigOpt = None,
    threads: ThreadsOpt = 1,
) -> None:
    """Serve search, /rerank, OpenAPI docs and the web page (FastAPI + uvicorn)."""
    import uvicorn

    from reldistill.retrieval.service.app import create_app
    from reldistill.workflow.compose import run_pipeline

    recipe, runtime = _recipe(config)
    if trusted_host is not None and any(not h.strip() for h in trusted_host):
        raise UserError("--trusted-host must name a host (\"*\" accepts any), not an empty string.")
    scfg = override(recipe.serve, host=host or None, port=port, api_key=resolve_api_key(api_key or runtime.api_key, api_key_file),
                    trusted_hosts=trusted_host or None, allow_remote_without_key=allow_remote_without_key or None)
    scfg.check_exposure()
    check_port_free(scfg.host, scfg.port)  # before the models load
    if not scfg.loopback and scfg.trusted_hosts == list(LOOPBACK_HOSTS):  # clients name the bound address (any, for 0.0.0.0)
        scfg.trusted_hosts = ["*"] if scfg.host in ("0.0.0.0", "::") else [*LOOPBACK_HOSTS, scfg.host]
    _threads(threads)
    pipe = run_pipeline(run, recipe.search, runtime=runtime)
    other = None
    if compare:
        cpath = Path(compare)
        if cpath.is_dir() and index_dir_of(cpath).is_dir():
            other = run_pipeline(cpath, recipe.search, runtime=runtime)
        else:
            other = pipe.with_student(compare, name=compare)
    app = create_app(pipe, scfg, compare=other)
    uvicorn.Server(uvicorn_config(app, scfg)).run()


def resolve_api_key(given: str | None, key_file: Path | None) -> str | None:
    """The key from --api-key / $RELDISTILL_API_KEY, or the first line of --api-key-file (not both)."""
    if key_file is None:
        return given or None
    if given:
        raise UserError("pass the API key once: --api-key (or $RELDISTILL_API_KEY) or --api-key-file, not both.")
    try:
        lines = key_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--api-key-file {key_file} cannot be read ({getattr(e, 'strerror', None) or e}) — pass a readable text file.") from None
    if not lines or not lines[0].strip():
        raise UserError(f"--api-key-file {key_file} is empty — write the key on its first line.")
    return lines[0].strip()


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command("search")(search_cmd)
    app.command("serve")(serve_cmd)
