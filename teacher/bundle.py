"""The demo's bundled teacher: a small trained artifact shipped in the repo (adapter + head + tokenizer + manifest).

The ranking variant needs more CPU than the demo's teacher budget, so it is trained once with
``python scripts/train_bundled_teacher.py`` on the sample's train split and shipped under
``teacher/bundled/<name>/`` with ``bundle.json`` (the command, the data fingerprint, the commit).
``reldistill demo`` copies it into the run when the recipe's data has the same fingerprint;
``reldistill demo --train-teacher`` (or other data) trains on the machine instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from reldistill.artifacts import atomic_path, data_fingerprint, read_json
from reldistill.errors import UserError

BUNDLE_FILE = "bundle.json"
# what an artifact directory keeps when it is bundled (no checkpoints, logs or caches)
KEEP = ("adapter", "head.safetensors", "tokenizer", "teacher.json", "metrics.json", "manifest.json")
REPO = Path(__file__).resolve().parents[1]


def bundle_dir(value: str | Path) -> Path:
    """``train.bundled`` → a folder: absolute, else relative to the repo root."""
    p = Path(value)
    return p if p.is_absolute() else REPO / p


def make_bundle(teacher_dir: Path, dest: Path, command: str, data_path: str) -> Path:
    """Copy the artifact files of ``teacher_dir`` to ``dest`` and write ``bundle.json`` (command, data, commit)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        for name in KEEP:
            src = teacher_dir / name
            if src.is_dir():
                shutil.copytree(src, tmp / name)
            elif src.is_file():
                shutil.copy2(src, tmp / name)
        (tmp / BUNDLE_FILE).write_text(json.dumps({"command": command, "data_path": data_path,
                                                   "data_fingerprint": data_fingerprint(data_path), "commit": commit},
                                                  indent=1) + "\n", encoding="utf-8")
    return dest


def bundle_matches(src: Path, data_path: str) -> tuple[bool, str]:
    """(usable, why): the bundle exists and was trained on data with the same fingerprint."""
    if not (src / BUNDLE_FILE).is_file() or not (src / "manifest.json").is_file():
        return False, f"no bundled teacher at {src}"
    info = read_json(src / BUNDLE_FILE)
    try:
        same = info.get("data_fingerprint") == data_fingerprint(data_path)
    except OSError:
        same = False
    return (True, "") if same else (False, f"the bundled teacher at {src} was trained on other data than {data_path}")


def install_bundle(src: Path, dest: Path) -> dict[str, Any]:
    """Copy the bundle into the run's teacher directory (atomically); returns its bundle.json."""
    if not src.is_dir():
        raise UserError(f"bundled teacher {src} does not exist — fix train.bundled or run with --train-teacher.")
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)
    return read_json(dest / BUNDLE_FILE)
