"""CLI of the retrieval stage: `reldistill index build`, `reldistill search`, `reldistill serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from reldistill.errors import UserError

index_app = typer.Typer(help="Build the FAISS + BM25 product index of a run.", no_args_is_help=True)

RunOpt = Annotated[Path, typer.Option("--run", help="Run directory (holds student/ and index/).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="Recipe YAML; its data:, index:, search:, serve: sections are used.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (1 is fastest for single queries on a busy machine).")]


def _sections(config: Path | None) -> dict:
    from reldistill.config import load_yaml
    from reldistill.student.backend import configure_from_recipe

    sections = load_yaml(config) if config is not None else {}
    configure_from_recipe(sections)  # student.backend for index build, search and serve
    return sections


def _data_cfg(sections: dict, data: Path | None):
    from reldistill.config import DataConfig, from_dict

    cfg = from_dict(DataConfig, sections.get("data"), "data")
    if data is not None:
        cfg.path = str(data)
    return cfg


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


@index_app.command("build")
def index_build_cmd(
    run: RunOpt,
    student: Annotated[Optional[str], typer.Option(help="Student folder or name (default: <run>/student).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="ESCI directory (default: the recipe's or ../shared/data/esci-sample).")] = None,
    kind: Annotated[Optional[str], typer.Option(help="flat (exact, default) | hnsw | ivfpq.")] = None,
    config: ConfigOpt = None,
    threads: ThreadsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace <run>/index even when it is not an index directory.")] = False,
) -> None:
    """Encode the catalog with the student and write <run>/index/ (FAISS + BM25 + products + manifest), atomically."""
    from reldistill.config import from_dict
    from reldistill.retrieval.build import build_index
    from reldistill.retrieval.config import IndexConfig

    sections = _sections(config)
    icfg = from_dict(IndexConfig, {**(sections.get("index") or {}), **({"kind": kind} if kind else {})}, "index")
    if not run.exists():
        run.mkdir(parents=True)
    _threads(threads)
    out = build_index(run, student, _data_cfg(sections, data), kind=icfg.kind, config=icfg, force=force)
    typer.echo(str(out))


def _search_cfg(sections: dict):
    from reldistill.config import from_dict
    from reldistill.retrieval.config import SearchConfig

    return from_dict(SearchConfig, sections.get("search"), "search")


def _pipeline(run: Path, sections: dict, student: str | None = None, name: str | None = None):
    """The run's pipeline under the recipe's ``search:`` settings, with the run's dev-chosen serving.json applied."""
    from reldistill.retrieval.pipeline import SearchPipeline
    from reldistill.retrieval.serving import read_serving

    cfg = _search_cfg(sections)
    serving = read_serving(run)
    if serving is not None:
        cfg = serving.search_config(cfg)
    pipe = SearchPipeline.from_run(run, student=student, config=cfg, name=name)
    if serving is not None:
        pipe.default_mode = serving.mode
    return pipe


def search_cmd(
    query: Annotated[str, typer.Argument(help="The query text.")],
    run: RunOpt,
    mode: Annotated[Optional[str], typer.Option(help="bm25 | dense | hybrid | rerank (hybrid + teacher rerank); default: the run's serving.json (chosen on dev by `reldistill eval`), else hybrid.")] = None,
    k: Annotated[int, typer.Option("--k", help="Number of results.")] = 10,
    rerank_k: Annotated[Optional[int], typer.Option(help="Fused candidates the teacher reranks (default: search.rerank_k).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOpt = None,
    threads: ThreadsOpt = 1,
) -> None:
    """Search the run's index and print product ids, titles, scores and the rank at each stage."""
    from reldistill.retrieval.config import MODES
    from reldistill.retrieval.pipeline import check_query

    check_query(query)
    if mode is not None and mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}.")
    sections = _sections(config)
    max_k = _search_cfg(sections).max_k
    if not 1 <= k <= max_k:
        raise UserError(f"--k must be between 1 and {max_k}, got {k}.")
    if rerank_k is not None and not 1 <= rerank_k <= max_k:
        raise UserError(f"--rerank-k must be between 1 and {max_k}, got {rerank_k}.")
    _threads(threads)
    pipe = _pipeline(run, sections)
    mode = mode or pipe.default_mode
    res = pipe.search(query, mode=mode, k=k, rerank_k=rerank_k)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{mode} · {query!r}" + (" (judged query)" if res.judged else ""), title_justify="left")
    for col in ("#", "product_id", "title", "brand", "score", "bm25", "dense", "rrf", "rerank", "label"):
        t.add_column(col, no_wrap=True, overflow="ellipsis", max_width=60 if col == "title" else 24)
    for h in res.results:
        t.add_row(str(h.rank), h.product_id, h.title, h.brand, f"{h.score:.4f}",
                  *(str(r) if r is not None else "-" for r in (h.bm25_rank, h.dense_rank, h.fused_rank, h.rerank_rank)),
                  h.label or "-")
    out = Console() if typer.get_text_stream("stdout").isatty() else Console(width=160)
    out.print(t)
    out.print(" · ".join(f"{name} {ms:.1f} ms" for name, ms in res.timings_ms.items()), style="dim")


def serve_cmd(
    run: RunOpt,
    host: Annotated[Optional[str], typer.Option(help="Interface to bind (default 127.0.0.1: loopback only).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default 8000).")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="RELDISTILL_API_KEY", help="Require this X-API-Key header on API calls.")] = None,
    compare: Annotated[Optional[str], typer.Option(help="Second pipeline for the side-by-side page: a run directory with an index, or a student (e.g. minilm-l6, indexed in memory).")] = None,
    allow_remote_without_key: Annotated[bool, typer.Option("--allow-remote-without-key", help="Allow a non-loopback --host without --api-key (anyone who reaches the port can use the service).")] = False,
    trusted_host: Annotated[Optional[list[str]], typer.Option("--trusted-host", help="Host header to accept (repeatable; \"*\" for any). Default: loopback names, plus the bound address.")] = None,
    config: ConfigOpt = None,
    threads: ThreadsOpt = 1,
) -> None:
    """Serve search, /rerank, OpenAPI docs and the web page (FastAPI + uvicorn)."""
    import dataclasses

    import uvicorn

    from reldistill.config import from_dict
    from reldistill.retrieval.config import LOOPBACK_HOSTS, ServeConfig
    from reldistill.retrieval.service import create_app
    from reldistill.run_layout import index_dir_of

    sections = _sections(config)
    scfg = from_dict(ServeConfig, sections.get("serve"), "serve")
    over = {k: v for k, v in (("host", host), ("port", port), ("api_key", api_key), ("trusted_hosts", trusted_host)) if v}
    if allow_remote_without_key:
        over["allow_remote_without_key"] = True
    scfg = ServeConfig(**{**dataclasses.asdict(scfg), **over})
    scfg.check_exposure()
    if not scfg.loopback and scfg.trusted_hosts == list(LOOPBACK_HOSTS):  # clients name the bound address (any, for 0.0.0.0)
        scfg.trusted_hosts = ["*"] if scfg.host in ("0.0.0.0", "::") else [*LOOPBACK_HOSTS, scfg.host]
    _threads(threads)
    pipe = _pipeline(run, sections)
    other = None
    if compare:
        cpath = Path(compare)
        if cpath.is_dir() and index_dir_of(cpath).is_dir():
            other = _pipeline(cpath, sections)
        else:
            other = pipe.with_student(compare, name=compare)
    app = create_app(pipe, scfg, compare=other)
    uvicorn.run(app, host=scfg.host, port=scfg.port, log_level="warning", server_header=False,
                limit_concurrency=256, timeout_keep_alive=5, h11_max_incomplete_event_size=16 * 1024)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command("search")(search_cmd)
    app.command("serve")(serve_cmd)
