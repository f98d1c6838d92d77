"""The `reldistill` command line: typer app with one group per stage.

Stage packages contribute their commands through a ``register(app)`` function in their ``cli``
module (imported lazily so `reldistill --help` stays fast). User errors print one sentence and
exit non-zero, without a traceback.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from reldistill.errors import UserError
from reldistill.progress import console
from reldistill.settings import log_level

app = typer.Typer(help="Distil an LLM's judgement of search relevance into fast search.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Inspect ESCI data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Modules that add their commands with register(app). Missing modules are skipped.
STAGE_CLIS = (
    "reldistill.workflow.cli.teacher",
    "reldistill.workflow.cli.distill",
    "reldistill.workflow.cli.retrieval",
    "reldistill.workflow.cli.eval",
    "reldistill.workflow.cli.pipeline",
    "reldistill.workflow.calibrate",
)

DataOpt = Annotated[Optional[Path], typer.Option("--data", help="ESCI directory or CSV/JSONL/parquet table.")]


@data_app.command("stats")
def data_stats_cmd(
    data: DataOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    locale: Annotated[str, typer.Option(help="ESCI product_locale to keep ('all' for every locale).")] = "us",
) -> None:
    """Pairs, queries, products, label counts per split and text-length percentiles."""
    from reldistill.config import DataConfig
    from reldistill.data import data_stats, load_esci

    cfg = DataConfig(locale=None if locale == "all" else locale)
    if data is not None:
        cfg.path = str(data)
    stats = data_stats(load_esci(cfg))
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    out = console.__class__()
    out.print(f"[bold]{stats['source']}[/]: {stats['pairs']:,} pairs · {stats['queries']:,} queries · "
              f"{stats['products']:,} products ({stats['dropped_empty_text']} dropped for empty text)")
    t = Table("split", "pairs", "queries", "E", "S", "C", "I", "judged/query (min/med/max)")
    for name, s in stats["splits"].items():
        lab = s["labels"]
        j = s["judged_per_query"]
        t.add_row(name, f"{s['pairs']:,}", f"{s['queries']:,}", *(f"{lab.get(k, 0):,}" for k in "ESCI"),
                  f"{j['min']}/{j['median']:g}/{j['max']}")
    out.print(t)
    lt = Table("text", "p50", "p90", "p99", "max")
    for key in ("product_text_chars", "product_text_words", "query_chars"):
        p = stats[key]
        lt.add_row(key, *(str(p.get(k, "-")) for k in ("p50", "p90", "p99", "max")))
    out.print(lt)


DISK_ERRORS = {errno.ENOSPC: "the disk is full — free space and rerun the same command",
               errno.EDQUOT: "the disk quota is exhausted — free space and rerun the same command",
               errno.EROFS: "the file system is read-only — copy the run somewhere writable or pass another output path",
               errno.EACCES: "permission denied — make it writable or pass another path"}


def disk_error_sentence(e: OSError) -> str:
    """One sentence for a write the disk refused (full, read-only, no permission); what was there is unchanged."""
    return f"{e.filename or 'a write'} failed: {DISK_ERRORS[e.errno]} (the previous artifacts are unchanged)."


def _register_stages() -> None:
    for mod in STAGE_CLIS:
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(mod).register(app)


_register_stages()


def not_library_chatter(record: logging.LogRecord) -> bool:
    """Drop what a user cannot act on: bm25s's debug lines (it sets its own logger to DEBUG on import) and
    bitsandbytes' CUDA-library warnings on CPU machines (QLoRA is optional)."""
    lib = record.name.split(".", 1)[0]
    return not ((lib == "bm25s" and record.levelno < logging.WARNING) or (lib == "bitsandbytes" and record.levelno < logging.ERROR))


def main() -> None:
    """Entry point: run the app; UserError → one red line on stderr, exit 2."""
    logging.basicConfig(level=log_level(), format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(not_library_chatter)
    try:
        app()
    except UserError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        console.print(f"[bold red]error:[/] {disk_error_sentence(e)}", highlight=False, soft_wrap=True)
        sys.exit(UserError.exit_code)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/] — rerun the same command to resume.")
        sys.exit(130)

