"""`reldistill demo`: the whole pipeline on the embedded defaults, resumable."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from reldistill.progress import console
from reldistill.settings import pin_threads
from reldistill.workflow.demo_inputs import demo_recipe


def demo_cmd(
    config: Annotated[Path, typer.Option("--config", help="Recipe YAML (data, teacher, train, score, distill, index, eval).")] = Path("configs/demo-cpu.yaml"),
    run: Annotated[Path, typer.Option("--run", help="Run directory to write (and resume).")] = Path("runs/demo"),
    data: Annotated[Optional[Path], typer.Option("--data", help="Override the recipe's data.path.")] = None,
    budget_minutes: Annotated[Optional[float], typer.Option("--budget-minutes", help="Target minutes of the pipeline (default: the recipe's demo.target_minutes); the CPU-sized stages fit it.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo every stage instead of reusing finished ones.")] = False,
    train_teacher: Annotated[bool, typer.Option("--train-teacher", help="Train the teacher here instead of reusing the recipe's bundled one.")] = False,
) -> None:
    """Run data check → teacher → candidates → scoring → students → index → eval → report into --run."""
    # The demo owns the machine: use every core, one thread count for every stage (so its figures repeat), whatever
    # else the "auto" rule would find busy at a stage's start. Set OMP_NUM_THREADS to choose otherwise.
    pin_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

    from rich.markdown import Markdown

    demo_recipe(config, budget_minutes, str(data) if data else None)  # bad input: one sentence before the imports below
    from reldistill.workflow.pipeline import Pipeline  # torch, transformers

    t0 = time.perf_counter()
    pipe = Pipeline(config, run, budget_minutes=budget_minutes, data_path=str(data) if data else None, train_teacher=train_teacher)
    state = pipe.run_all(force=force)
    report_md = pipe.run.report_md
    console.rule("[bold]report")
    console.print(Markdown(report_md.read_text(encoding="utf-8")))
    table = "\n".join(f"  {name:<14} {rec['seconds']:>7.1f} s  {rec['summary']}" for name, rec in state["stages"].items())
    console.print(f"[bold]stage wall times[/] (this invocation {time.perf_counter() - t0:.0f} s):\n{table}", highlight=False)
    console.print(f"report: [bold]{report_md}[/]\nbrowse it: [bold]reldistill serve --run {pipe.run.root}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
