"""Progress bars with a rate (pairs/s, docs/s) on stderr, shared by every long stage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class _Rate(TextColumn):
    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="cyan")


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, unit: str = "items", initial: int = 0) -> Iterator:
    """Yield ``advance(n)``; shows done/total, rate in ``unit``/s, elapsed and ETA."""
    prog = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        _Rate(unit), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
        transient=False,
    )
    with prog:
        task = prog.add_task(description, total=total, completed=initial)
        yield lambda n=1: prog.advance(task, n)
