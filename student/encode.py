"""Load a sentence-transformers student (on its inference backend) and encode queries / product texts with its prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reldistill.errors import UserError
from reldistill.models import resolve_model

# Prompts for model families that need them (E5-style); models with their own `prompts` keep them.
FAMILY_PROMPTS = {
    "e5": {"query": "query: ", "document": "passage: "},
    "bge": {"query": "Represent this sentence for searching relevant passages: ", "document": ""},
}


def family_prompts(name: str) -> dict[str, str] | None:
    low = name.lower()
    if "e5" in low:
        return FAMILY_PROMPTS["e5"]
    if "bge" in low and "m3" not in low:
        return FAMILY_PROMPTS["bge"]
    return None


def check_student_folder(folder: Path) -> None:
    """Refuse (UserError) a folder that is another kind of artifact or no sentence-transformers model."""
    from reldistill.artifacts import manifest_kind

    kind = manifest_kind(folder)
    if kind is not None and kind != "student":
        raise UserError(f"{folder} holds a {kind!r} artifact, not a student — pass a student folder or a model name.")
    if not any((folder / f).is_file() for f in ("modules.json", "config.json")):
        raise UserError(f"{folder} is not a sentence-transformers model folder (no modules.json or config.json) — "
                        f"pass a student folder or a model name.")


def load_student(name_or_path: str, device: str | None = None, backend: str | None = None, int8: bool | None = None,
                 **kwargs: Any):
    """SentenceTransformer from a short name, hub id or folder, ready to encode; adds E5/BGE prompts when it has none.

    ``backend`` (default: $RELDISTILL_STUDENT_BACKEND, else the recipe's ``student.backend``, else auto)
    picks the inference runtime: torch, onnx (ONNX Runtime) or openvino, or auto = the fastest measured
    on this CPU. Index build, eval, search and serve load through here; training passes ``backend="torch"``.
    ``int8`` (default: ``student.int8`` is auto and the recorded dev gate passed) runs the int8 ONNX
    export on ONNX Runtime. ``model.reldistill_backend`` says which runtime encodes.
    """
    from pathlib import Path

    from sentence_transformers import SentenceTransformer

    from reldistill.student import backend as rt
    from reldistill.student.identity import weights_digest

    r = resolve_model(name_or_path)
    if r.source == "local-dir":
        check_student_folder(Path(r.path))

    def load_torch():
        m = SentenceTransformer(r.path, device=device or "cpu", trust_remote_code=False, **kwargs)
        if not getattr(m, "prompts", None) or not any(m.prompts.values()):
            prompts = family_prompts(r.hub_id or r.name)
            if prompts:
                m.prompts = dict(prompts)
        m.reldistill_backend = "torch"
        m.reldistill_source = (Path(r.path), digest)  # what the query encoder exports and keys its choice by
        return m

    digest = weights_digest(r.path) if Path(r.path).is_dir() else None
    choice = rt.backend_setting(backend)
    if choice == "torch" or (device or "cpu") != "cpu" or digest is None:
        return load_torch()
    if choice != "auto" and not rt.runtime_installed(choice):
        rt.log.warning("student backend %s is not installed (pip install 'reldistill[%s]'); encoding with torch", choice, choice)
        return load_torch()
    if choice == "auto":
        choice = rt.auto_backend(load_torch, Path(r.path), digest)
    model = load_torch()
    if int8 is None:
        verdict = rt.int8_verdict(Path(r.path), digest) if rt.int8_setting() == "auto" else None
        int8 = bool(verdict and verdict.get("kept"))
    if choice != "torch":
        try:
            rt.attach_runtime(model, choice, Path(r.path), digest, int8=int8 and choice == "onnx")
        except Exception as e:  # noqa: BLE001 - an export or runtime failure costs speed, never the encode
            rt.log.warning("student backend %s failed (%s: %s); encoding with torch", choice, type(e).__name__, e)
            model = load_torch()
    return model


def set_max_seq_length(model, n: int) -> None:
    """Cap the student's input tokens at ``n``; static-embedding students (no positions) have no cap to set."""
    prop = getattr(type(model[0]), "max_seq_length", None)
    if isinstance(prop, property) and prop.fset is None:
        return
    model.max_seq_length = n


def autocast(model):
    """bf16 autocast for the student's device when the student precision resolves to bf16, else a no-op."""
    import contextlib

    import torch

    from reldistill.precision import student_dtype

    device = getattr(model, "device", torch.device("cpu")).type
    if device not in ("cpu", "cuda") or student_dtype() != torch.bfloat16:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16)


def _encode(model, texts: list[str], kind: str, batch_size: int, show_progress: bool) -> np.ndarray:
    prompt = (getattr(model, "prompts", None) or {}).get(kind) or None
    with autocast(model):
        emb = model.encode(list(texts), prompt=prompt, batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=show_progress)
    return np.ascontiguousarray(emb, dtype=np.float32)


def encode_queries(model, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
    """L2-normalised float32 query embeddings (query prompt applied if the model has one)."""
    return _encode(model, texts, "query", batch_size, show_progress)


def encode_documents(model, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
    """L2-normalised float32 document embeddings (document prompt applied if the model has one)."""
    return _encode(model, texts, "document", batch_size, show_progress)

