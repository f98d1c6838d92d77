"""Run directories, JSON manifests and atomic writes.

Every artifact is written under a temporary name in the same directory and renamed into place,
so a crash never leaves a half-written file under its final name. Each stage directory holds a
``manifest.json`` saying what produced it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from reldistill import __version__
from reldistill.errors import UserError

MANIFEST = "manifest.json"
TRACKED_PACKAGES = ("torch", "transformers", "peft", "accelerate", "sentence-transformers", "faiss-cpu", "bm25s", "datasets")


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``final``; on success rename it over ``final`` (file or directory).

    On error the temp path is removed and ``final`` (if it existed) is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"atomic_path: nothing was written to {target}")
        if target.is_dir() and final.is_dir():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(target, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (UTF-8, indented, sorted keys off to keep the author's order)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_parquet(path: str | Path, df) -> Path:
    """Write a pandas frame to parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p} does not exist — run the stage that writes it first.")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{p} is not valid JSON (truncated or corrupted) — rerun the stage that writes it.") from None


def file_fingerprint(path: str | Path, full_limit: int = 256 << 20) -> str:
    """sha256 of a file's bytes (for files over ``full_limit``: size + first and last 16 MiB)."""
    p = Path(path)
    h = hashlib.sha256()
    size = p.stat().st_size
    with p.open("rb") as f:
        if size <= full_limit:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(str(size).encode())
            h.update(f.read(16 << 20))
            f.seek(-16 << 20, os.SEEK_END)
            h.update(f.read(16 << 20))
    return h.hexdigest()


def data_fingerprint(path: str | Path) -> dict[str, str]:
    """{file name: sha256} for a data file or every parquet/csv/jsonl file of a data directory."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(x for x in p.iterdir() if x.suffix in (".parquet", ".csv", ".jsonl", ".json"))
    return {f.name: file_fingerprint(f) for f in files}


def _versions() -> dict[str, str]:
    out = {"reldistill": __version__, "python": platform.python_version()}
    for pkg in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def write_manifest(directory: str | Path, kind: str, **fields: Any) -> dict[str, Any]:
    """Write ``directory/manifest.json``: kind, time, versions, host, plus ``fields`` (config, models, data...)."""
    manifest = {
        "kind": kind,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "host": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        **fields,
    }
    write_json(Path(directory) / MANIFEST, manifest)
    return manifest


def read_manifest(directory: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read ``directory/manifest.json``; a missing file or another kind is a UserError."""
    d = Path(directory)
    p = d / MANIFEST
    if not p.is_file():
        raise UserError(f"{d} has no {MANIFEST} — it is not a finished reldistill artifact; rerun the stage that writes it.")
    m = read_json(p)
    if kind is not None and m.get("kind") != kind:
        raise UserError(f"{d} holds a {m.get('kind')!r} artifact, not a {kind!r} one — pass the right directory.")
    return m


class RunDir:
    """One run directory: teacher/, scores/, student/, index/, report.json, report.md (what --run takes)."""

    STAGES = ("teacher", "scores", "student", "index", "eval")

    def __init__(self, root: str | Path, create: bool = False):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise UserError(f"run directory {self.root} does not exist — create it with `reldistill demo` or pass an existing --run.")

    def __getattr__(self, name: str) -> Path:
        if name in RunDir.STAGES:
            return self.root / name
        raise AttributeError(name)

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    def done(self, stage: str) -> bool:
        """A stage is finished when its directory holds a manifest (written last)."""
        return (self.root / stage / MANIFEST).is_file()
