"""A tiny resumable stage runner: a stage is reused when its artifact exists and its inputs are unchanged.

The pipeline state (`pipeline.json` in the run directory) records each stage's wall time, one-line
summary and a digest of each of its inputs (recipe section, data fingerprint, upstream manifests).
A rerun after Ctrl-C or kill skips finished stages; a finished stage whose inputs changed is redone
from scratch, and since its manifest changes, so is everything downstream of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reldistill.artifacts import read_json, write_json
from reldistill.progress import console
from reldistill.run_layout import STATE_FILE


@dataclasses.dataclass
class Stage:
    name: str
    title: str
    is_done: Callable[[], bool]
    run: Callable[[bool], str]  # does the work (from scratch when passed True), returns a one-line summary
    inputs: Callable[[], dict[str, Any]] = dict  # what the artifact is made from: {name: JSON-able value}


def input_digests(inputs: dict[str, Any]) -> dict[str, str]:
    """{input name: sha256[:16] of its canonical JSON}."""
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:16] for k, v in inputs.items()}


def changed_inputs(recorded: dict[str, Any] | None, digests: dict[str, str]) -> list[str]:
    """Names of inputs whose digest differs from the record (none when nothing was recorded)."""
    if not recorded or "inputs" not in recorded:
        return []
    old = recorded["inputs"]
    return [k for k in sorted(set(old) | set(digests)) if old.get(k) != digests.get(k)]


def _load_state(root: Path) -> dict[str, Any]:
    p = root / STATE_FILE
    return read_json(p) if p.is_file() else {"stages": {}}


def run_stages(root: Path, stages: list[Stage], force: bool = False) -> dict[str, Any]:
    """Run ``stages`` in order; print one summary line per stage.

    A finished stage is reused when its recorded input digests match the current ones (a finished
    artifact without a record, made by a stage command, is adopted). It is redone from scratch when
    an input changed (the line names which) or with ``force``. Records are only replaced when a
    stage finishes, so an interrupted ``force`` run still leaves every later stage marked stale.
    """
    state = _load_state(root)
    recorded = state.setdefault("stages", {})
    total = len(stages)
    for i, st in enumerate(stages, 1):
        head = f"[{i}/{total}] {st.title}"
        digests = input_digests(st.inputs())
        rec = recorded.get(st.name)
        done = st.is_done()
        changed = changed_inputs(rec, digests) if done else []
        if done and not force and not changed:
            note = f"{rec['summary']} ({rec['seconds']:.0f} s when run)" if rec else "finished artifact found, adopted"
            if rec is None or "inputs" not in rec:
                recorded[st.name] = {**(rec or {"summary": "adopted", "seconds": 0.0}), "inputs": digests}
                write_json(root / STATE_FILE, state)
            console.print(f"[green]✓[/] {head}: reused — {note}", highlight=False)
            continue
        console.rule(f"[bold]{head}")
        if changed and not force:
            console.print(f"[yellow]inputs changed since it ran ({', '.join(changed)}) — redoing it[/]", highlight=False)
        t0 = time.perf_counter()
        summary = st.run(force or bool(changed))
        secs = time.perf_counter() - t0
        recorded[st.name] = {"summary": summary, "seconds": round(secs, 1), "finished_at": time.time(), "inputs": digests}
        write_json(root / STATE_FILE, state)
        console.print(f"[green]✓[/] {head}: {summary} ({secs:.0f} s)", highlight=False)
    return state
