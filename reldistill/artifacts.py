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
import logging
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from reldistill import __version__
from reldistill.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRACKED_PACKAGES = ("torch", "transformers", "peft", "accelerate", "sentence-transformers", "faiss-cpu", "bm25s", "datasets")


OLD_MARK = ".old-"  # ``.<name>.old-<pid>``: the previous copy of a directory during a swap
TMP_SUFFIX = ".tmp"  # ``.<name>.<pid>-<random>.tmp``: a directory being built


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftover_pid(entry: str, name: str) -> tuple[str, int] | None:
    """('old'|'tmp', pid) when ``entry`` is a swap leftover of ``name`` made by process ``pid``, else None."""
    head = f".{name}"
    if not entry.startswith(head):
        return None
    rest = entry[len(head):]
    if rest.startswith(OLD_MARK) and rest[len(OLD_MARK):].isdigit():
        return "old", int(rest[len(OLD_MARK):])
    if rest.startswith(".") and rest.endswith(TMP_SUFFIX):
        pid = rest[1:].split("-", 1)[0]
        if pid.isdigit():
            return "tmp", int(pid)
    return None


def recover_swaps(final: str | Path) -> None:
    """Undo or finish what a killed swap of ``final`` left behind (call before using ``final``).

    A kill between the two renames of a directory swap leaves no ``final`` and its previous copy
    as ``.<name>.old-<pid>``: that copy is renamed back. When ``final`` exists, the leftover copy
    (whose deletion was cut short) and the temp directories of dead processes are removed.
    """
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return
    for entry in sorted(os.listdir(parent)):
        left = _leftover_pid(entry, final.name)
        # our own temp dirs may be in use; our own .old copy never is between calls (a reused pid)
        if left is None or (_pid_alive(left[1]) and not (left[0] == "old" and left[1] == os.getpid())):
            continue
        path = parent / entry
        if left[0] == "old" and not final.exists():
            os.replace(path, final)
            log.warning("restored %s from %s (a swap was interrupted)", final, path.name)
        else:
            shutil.rmtree(path, ignore_errors=True)


COMMIT_MARK = ".commit-"  # ``<root>/.commit-<pid>.tmp/``: files staged to replace their counterparts under root together
COMMITTED = ".committed"  # written last into a staging folder: from then on it is rolled forward, never back


def _roll_forward(stage: Path, root: Path) -> None:
    """Move every staged file to its place under ``root`` (manifests last), then drop the staging folder."""
    files = sorted((p for p in stage.rglob("*") if p.is_file() and p.name != COMMITTED), key=lambda p: (p.name == MANIFEST, str(p)))
    for f in files:
        final = root / f.relative_to(stage)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, final)
    shutil.rmtree(stage, ignore_errors=True)


def finish_commits(root: str | Path) -> None:
    """Finish what a killed ``staged_commit`` under ``root`` left: a committed set is rolled forward, another dropped."""
    root = Path(root)
    if not root.is_dir():
        return
    for entry in sorted(os.listdir(root)):
        pid = entry[len(COMMIT_MARK):-len(TMP_SUFFIX)] if entry.startswith(COMMIT_MARK) and entry.endswith(TMP_SUFFIX) else ""
        if not pid.isdigit() or (_pid_alive(int(pid)) and int(pid) != os.getpid()):
            continue
        stage = root / entry
        if (stage / COMMITTED).is_file():
            _roll_forward(stage, root)
            log.warning("finished an interrupted commit of %s", root)
        else:
            shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged_commit(root: str | Path) -> Iterator[Path]:
    """Yield a staging folder that mirrors ``root``; on success its files replace their counterparts as one unit.

    Write each result at its path relative to ``root`` inside the staging folder. A kill before the
    commit mark leaves ``root`` as it was; a kill after it is finished by ``finish_commits`` (run by
    ``RunDir``), so readers never see some files of a set beside older ones.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    finish_commits(root)
    stage = root / f"{COMMIT_MARK}{os.getpid()}{TMP_SUFFIX}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        (stage / COMMITTED).write_bytes(b"")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _roll_forward(stage, root)


def manifest_kind(directory: Path) -> str | None:
    try:
        m = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m.get("kind") if isinstance(m, dict) else None


def check_replaceable(directory: str | Path, kind: str, force: bool = False) -> None:
    """Refuse (UserError) to replace ``directory`` unless it is absent, empty or a finished ``kind`` artifact.

    ``force`` overrides. Call it before long work, so a wrong ``--output`` fails at once.
    """
    d = Path(directory)
    recover_swaps(d)
    if force or not d.exists():
        return
    if not d.is_dir():
        raise UserError(f"{d} is a file, not a {kind!r} directory — pass another output path.")
    if not any(d.iterdir()):
        return
    found = manifest_kind(d)
    if found != kind:
        what = f"a {found!r} artifact" if found else "files that are not a reldistill artifact"
        raise UserError(f"{d} already holds {what}, not a {kind!r} one — refusing to replace it; "
                        f"pass another output path, or --force to replace it.")


@contextlib.contextmanager
def atomic_path(final: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``final``; on success rename it over ``final`` (file or directory).

    On error the temp path is removed and ``final`` (if it existed) is untouched. A directory that
    holds a manifest replaces an existing non-empty ``final`` only when that one is an artifact of
    the same kind (``force`` overrides). A kill between the swap's two renames is repaired by
    ``recover_swaps`` (run here first, and by ``RunDir``).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_swaps(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}-", suffix=TMP_SUFFIX, dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"atomic_path: nothing was written to {target}")
        if target.is_dir() and final.exists():
            kind = manifest_kind(target)
            if kind is not None:
                check_replaceable(final, kind, force)
            old = final.parent / f".{final.name}{OLD_MARK}{os.getpid()}"
            os.replace(final, old)
            try:
                os.replace(target, final)
            except BaseException:
                os.replace(old, final)  # the previous copy goes back at once (a full disk, a read-only file system)
                raise
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


PARQUET_KIND = b"reldistill.kind"  # parquet schema metadata: the kind of file a command wrote (see check_output_file)


def write_parquet(path: str | Path, df, kind: str | None = None) -> Path:
    """Write a pandas frame to parquet atomically; ``kind`` is recorded in the schema metadata."""
    with atomic_path(path) as tmp:
        if kind is None:
            df.to_parquet(tmp, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), PARQUET_KIND: kind.encode()}), tmp)
    return Path(path)


def file_kind(path: str | Path) -> str | None:
    """The kind a reldistill command recorded in a parquet file (None: another file, or none recorded)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
    except Exception:  # noqa: BLE001 - not parquet, unreadable: no kind
        return None
    kind = meta.get(PARQUET_KIND)
    return kind.decode() if kind else None


def check_output_file(path: str | Path, kind: str, inputs: tuple = (), force: bool = False) -> None:
    """Refuse (UserError), before any work, a file output that a command of ``kind`` does not own.

    It must not be a directory, one of the command's ``inputs``, or inside another artifact's folder
    (one with a manifest); an existing file is replaced only when it was written as ``kind``
    (``force`` overrides that last rule).
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p} is a directory — pass a file path for the output.")
    if any(Path(i).resolve() == p.resolve() for i in inputs if i is not None):
        raise UserError(f"{p} is also an input of this command — pass another output path.")
    if p.name == MANIFEST or (p.parent / MANIFEST).is_file():
        raise UserError(f"{p.parent} is a {manifest_kind(p.parent)!r} artifact folder — refusing to write {p.name} "
                        f"inside it; pass an output path outside it.")
    if p.exists() and not force and file_kind(p) != kind:
        raise UserError(f"{p} already exists and was not written by this command — refusing to replace it; "
                        f"pass a new path (or delete the file first).")


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
    """Write ``directory/manifest.json``: kind, a unique id, time, versions, host, plus ``fields`` (config, models, data...).

    The id makes every rewrite of an artifact distinct, so stages that record the digest of this
    manifest see that it was redone (even within the same second).
    """
    manifest = {
        "kind": kind,
        "artifact_id": uuid.uuid4().hex,
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
