"""A tiny resumable stage runner: each stage is done when its artifact's manifest exists.

The pipeline state (`pipeline.json` in the run directory) records each stage's wall time and
one-line summary, so a rerun after Ctrl-C or kill skips finished stages and reports them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reldistill.artifacts import read_json, write_json
from reldistill.progress import console

STATE_FILE = "pipeline.json"


@dataclasses.dataclass
class Stage:
    name: str
    title: str
    is_done: Callable[[], bool]
    run: Callable[[], str]  # does the work, returns a one-line summary


def _load_state(root: Path) -> dict[str, Any]:
    p = root / STATE_FILE
    return read_json(p) if p.is_file() else {"stages": {}}


def run_stages(root: Path, stages: list[Stage], force: bool = False) -> dict[str, Any]:
    """Run ``stages`` in order, skipping finished ones unless ``force``; print one summary line per stage."""
    state = _load_state(root)
    recorded = state.setdefault("stages", {})
    if force:
        recorded.clear()
    total = len(stages)
    for i, st in enumerate(stages, 1):
        head = f"[{i}/{total}] {st.title}"
        if not force and st.is_done():
            rec = recorded.get(st.name)
            note = f"{rec['summary']} ({rec['seconds']:.0f} s when run)" if rec else "finished artifact found"
            console.print(f"[green]✓[/] {head}: reused — {note}", highlight=False)
            continue
        console.rule(f"[bold]{head}")
        t0 = time.perf_counter()
        summary = st.run()
        secs = time.perf_counter() - t0
        recorded[st.name] = {"summary": summary, "seconds": round(secs, 1), "finished_at": time.time()}
        write_json(root / STATE_FILE, state)
        console.print(f"[green]✓[/] {head}: {summary} ({secs:.0f} s)", highlight=False)
    return state
