"""One identity for a model — which weights it is, wherever its folder lives — for cache keys, manifests and indexes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from reldistill.artifacts import file_fingerprint
from reldistill.models import resolve_model


def weight_files(folder: str | Path) -> list[Path]:
    """A model folder's weight files (safetensors, shards included, and PyTorch .bin), in name order."""
    p = Path(folder)
    return sorted(p.glob("*.safetensors")) + sorted(p.glob("pytorch_model*.bin"))


def weights_digest(folder: str | Path) -> str | None:
    """sha256 of a model folder's weights (one file: its fingerprint; several: over their fingerprints); None without any."""
    files = weight_files(folder)
    if not files:
        return None
    if len(files) == 1:
        return file_fingerprint(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(file_fingerprint(f).encode())
    return h.hexdigest()


def model_identity(name_or_path: str | Path) -> str:
    """``<hub id or folder name>@<weights digest[:12]>`` (a name or folder without weights: its hub id or path)."""
    r = resolve_model(str(name_or_path))
    digest = weights_digest(r.path) if Path(r.path).is_dir() else None
    if digest is None:
        return str(r.hub_id or r.path)
    return f"{r.hub_id or Path(r.path).name}@{digest[:12]}"
