"""The demo's bundled teacher: a small trained artifact shipped in the repo (adapter + head + manifest).

The ranking variant needs more CPU than the demo's teacher budget, so it is trained once with
``python scripts/train_bundled_teacher.py`` on esci-extended's train split and shipped under
``teacher/bundled/<name>/`` with ``bundle.json`` (the command, the data fingerprint, the commit).
``reldistill demo`` copies it into the run when the recipe's data has the same fingerprint and the
same split and input settings (the dev carve it chose on, the product text it read); otherwise the
demo trains one on the machine and says why, as does ``reldistill demo --train-teacher``.

The tokenizer is not shipped (Gemma's tokenizer.json alone is 33 MB): ``bundle.json`` records the sha256 of
each tokenizer file, and installing rebuilds the folder from the base model (with the same pad-token choice
training made) and refuses, with one sentence, a base whose tokenizer differs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from reldistill.artifacts import atomic_path, data_fingerprint, read_json
from reldistill.config import DataConfig
from reldistill.errors import UserError
from reldistill.models import terms_files

BUNDLE_FILE = "bundle.json"
# what an artifact directory keeps when it is bundled (no checkpoints, logs or caches)
KEEP = ("adapter", "head.safetensors", "teacher.json", "metrics.json", "manifest.json", "calibration.json")
TOKENIZER = "tokenizer"  # rebuilt from the base model at install, checked against bundle.json's digests
REPO = Path(__file__).resolve().parents[1]
# keys transformers writes into tokenizer_config.json about how it was loaded (HF_HUB_OFFLINE flips
# local_files_only), not about how it tokenizes: left out of the digest
LOAD_KEYS = ("is_local", "local_files_only", "name_or_path", "_commit_hash")
# data settings that change what the teacher was trained and chosen on (splits, dev carve, its input text)
SAME_DATA_FIELDS = ("locale", "text_fields", "max_text_chars", "test_fraction", "dev_fraction", "seed")


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
        manifest = read_json(teacher_dir / "manifest.json")
        _copy_terms(manifest.get("base_model"), tmp)
        info = {"command": command, "data_path": data_path, "data_fingerprint": data_fingerprint(data_path), "commit": commit,
                "tokenizer_sha256": tokenizer_digests(teacher_dir / TOKENIZER)}
        started = started_from(manifest.get("train", {}).get("init_from"), commit)
        (tmp / BUNDLE_FILE).write_text(json.dumps({**info, **({"started_from": started} if started else {})}, indent=1) + "\n",
                                       encoding="utf-8")
    return dest


def started_from(init_from: str | None, commit: str | None) -> dict | None:
    """Provenance of a warm start (train.init_from): the path, for a bundle its bundle.json (command, commit, chain),
    and ``files_at``: ``commit`` when the folder is committed unchanged there (``git show COMMIT:PATH`` restores it)."""
    if not init_from:
        return None
    src = Path(init_from) / BUNDLE_FILE
    info = read_json(src) if src.is_file() else {}
    out = {"path": init_from, **{k: v for k, v in info.items() if k in ("command", "commit", "started_from")}}
    try:
        rel = str(Path(init_from).resolve().relative_to(REPO))
        git = ["git", "-C", str(REPO)]
        tracked = subprocess.run([*git, "ls-files", "--error-unmatch", rel], capture_output=True).returncode == 0
        clean = not subprocess.run([*git, "status", "--porcelain", "--", rel], capture_output=True, text=True).stdout.strip()
    except (ValueError, OSError):
        tracked = clean = False
    return {**out, "files_at": commit} if commit and tracked and clean else out


def _copy_terms(base_model: str | None, dest: Path) -> None:
    """A derivative carries its base model's terms: copy them under ``dest/terms/`` with a one-line notice."""
    files = terms_files(base_model)
    if not files:
        return
    (dest / "terms").mkdir()
    for f in files:
        shutil.copy2(f, dest / "terms" / f.name)
    (dest / "terms" / "DERIVATIVE_NOTICE.md").write_text(
        f"This folder is a model derivative of {base_model} (a LoRA adapter and score head trained on it). "
        "Its use and any redistribution are subject to the base model's terms copied beside this notice, "
        "including their use restrictions, which must be passed on with it.\n", encoding="utf-8")


def bundle_matches(src: Path, data: DataConfig) -> tuple[bool, str]:
    """(usable, why): the bundle exists, was trained on data with the same fingerprint, and with the same
    split and input settings (so its dev choice was made on this dev carve and it never saw this test split)."""
    if not (src / BUNDLE_FILE).is_file() or not (src / "manifest.json").is_file():
        return False, f"no bundled teacher at {src}"
    info = read_json(src / BUNDLE_FILE)
    try:
        same = info.get("data_fingerprint") == data_fingerprint(data.path)
    except OSError:
        same = False
    if not same:
        return False, f"the bundled teacher at {src} was trained on other data than {data.path}"
    trained = read_json(src / "manifest.json").get("data") or {}
    differ = [f for f in SAME_DATA_FIELDS if f in trained and trained[f] != getattr(data, f)]
    if differ:
        return False, f"the bundled teacher at {src} was trained with other data.{'/'.join(differ)} settings"
    return True, ""


def _content(f: Path) -> bytes:
    """A tokenizer file's bytes; a JSON object without the keys that record how it was loaded (canonical form)."""
    if f.suffix != ".json":
        return f.read_bytes()
    obj = json.loads(f.read_text(encoding="utf-8"))
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k not in LOAD_KEYS}
    return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")


def tokenizer_digests(folder: Path) -> dict[str, str]:
    """sha256 of each file in ``folder`` (the tokenizer the teacher was trained with), as :func:`_content` reads it."""
    return {f.name: hashlib.sha256(_content(f)).hexdigest() for f in sorted(folder.iterdir()) if f.is_file()}


def rebuild_tokenizer(base_model: str, dest: Path, expected: dict[str, str]) -> None:
    """Write the base model's tokenizer (pad token chosen as in training) to ``dest``; refuse one that differs."""
    from reldistill.teacher.backbone import load_tokenizer
    from reldistill.teacher.inputs import choose_pad_token

    tok = load_tokenizer(base_model)
    choose_pad_token(tok)
    tok.save_pretrained(str(dest))
    if tokenizer_digests(dest) != expected:
        raise UserError(f"the tokenizer of {base_model} differs from the one the bundled teacher was trained with — "
                        "install that base model's version, or run the demo with --train-teacher.")


def install_bundle(src: Path, dest: Path) -> dict[str, Any]:
    """Copy the bundle into the run's teacher directory (atomically, the tokenizer rebuilt); returns its bundle.json."""
    if not src.is_dir():
        raise UserError(f"bundled teacher {src} does not exist — fix train.bundled or run with --train-teacher.")
    info = read_json(src / BUNDLE_FILE)
    with atomic_path(dest) as tmp:
        shutil.copytree(src, tmp)
        if not (tmp / TOKENIZER).is_dir():
            rebuild_tokenizer(read_json(src / "manifest.json")["base_model"], tmp / TOKENIZER, info.get("tokenizer_sha256") or {})
    return info
