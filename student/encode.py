"""Load a sentence-transformers student (on its inference backend) and encode queries / product texts with its prompts.

A loaded student keeps the ``Runtime`` it was loaded with (``model.reldistill_runtime``): its encodes (bf16 autocast
or not) and its query encoder follow that runtime's settings; ``student_runtime(model)`` reads it back.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reldistill.artifacts import manifest_kind
from reldistill.errors import UserError
from reldistill.models import resolve_model
from reldistill.precision import student_dtype
from reldistill.settings import Runtime, check_backend
from reldistill.student import backend as rt
from reldistill.student.identity import weights_digest
from reldistill.student.runtime_choice import BATCH, choice_key, measured_choice

# Prompts for model families that need them (E5-style); models with their own `prompts` keep them.
FAMILY_PROMPTS = {
    "e5": {"query": "query: ", "document": "passage: "},
    "bge": {"query": "Represent this sentence for searching relevant passages: ", "document": ""},
}
PROBE_QUERY = "wireless noise cancelling headphones"
PROBE_DOCS = [f"Brand {i} stainless steel water bottle {i % 7 + 1} l, insulated, colour {i % 5}" for i in range(64)]


def family_prompts(name: str) -> dict[str, str] | None:
    low = name.lower()
    if "e5" in low:
        return FAMILY_PROMPTS["e5"]
    if "bge" in low and "m3" not in low:
        return FAMILY_PROMPTS["bge"]
    return None


def student_runtime(model) -> Runtime:
    """The runtime ``model`` was loaded with (``load_student``), else the library defaults."""
    return getattr(model, "reldistill_runtime", None) or Runtime()


def check_student_folder(folder: Path) -> None:
    """Refuse (UserError) a folder that is another kind of artifact or no sentence-transformers model."""
    kind = manifest_kind(folder)
    if kind is not None and kind != "student":
        raise UserError(f"{folder} holds a {kind!r} artifact, not a student — pass a student folder or a model name.")
    if not any((folder / f).is_file() for f in ("modules.json", "config.json")):
        raise UserError(f"{folder} is not a sentence-transformers model folder (no modules.json or config.json) — "
                        f"pass a student folder or a model name.")


def load_student(name_or_path: str, device: str | None = None, backend: str | None = None, int8: bool | None = None,
                 *, runtime: Runtime | None = None, **kwargs: Any):
    """SentenceTransformer from a short name, hub id or folder, ready to encode; adds E5/BGE prompts when it has none.

    ``backend`` (default: ``runtime.student_backend`` — $RELDISTILL_STUDENT_BACKEND, else the recipe's
    ``student.backend``, else auto) picks the inference runtime: torch, onnx (ONNX Runtime) or openvino, or auto = the
    fastest measured on this CPU. Index build, eval, search and serve load through here; training passes
    ``backend="torch"``. ``int8`` (default: ``runtime.student_int8`` is auto and the recorded dev gate passed) runs the
    int8 ONNX export on ONNX Runtime. ``model.reldistill_backend`` says which runtime encodes; the model keeps
    ``runtime`` (``student_runtime``).
    """
    from sentence_transformers import SentenceTransformer

    runtime = runtime or Runtime()
    r = resolve_model(name_or_path, runtime)
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
        m.reldistill_runtime = runtime
        return m

    digest = weights_digest(r.path) if Path(r.path).is_dir() else None
    choice = check_backend(backend, "backend") if backend else runtime.student_backend
    if choice == "torch" or (device or "cpu") != "cpu" or digest is None:
        return load_torch()
    if choice != "auto" and not rt.runtime_installed(choice):
        rt.log.warning("student backend %s is not installed (pip install 'reldistill[%s]'); encoding with torch", choice, choice)
        return load_torch()
    if choice == "auto":
        choice = auto_backend(load_torch, Path(r.path), digest, runtime)
    model = load_torch()
    if int8 is None:
        verdict = rt.int8_verdict(Path(r.path), digest, runtime=runtime) if runtime.student_int8 == "auto" else None
        int8 = bool(verdict and verdict.get("kept"))
    if choice != "torch":
        try:
            rt.attach_runtime(model, choice, Path(r.path), digest, int8=int8 and choice == "onnx", runtime=runtime)
        except Exception as e:  # noqa: BLE001 - an export or runtime failure costs speed, never the encode
            rt.log.warning("student backend %s failed (%s: %s); encoding with torch", choice, type(e).__name__, e)
            model = load_torch()
    return model


# ---- auto: measure once per machine and student (reldistill.student.runtime_choice) ----------------------
def time_backend(st_model, repeats: int = 15) -> dict[str, float]:
    """p50 ms of one short query and docs/s of 64 product-like texts, through ``encode_queries/documents``."""
    encode_queries(st_model, [PROBE_QUERY])
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        encode_queries(st_model, [PROBE_QUERY])
        ts.append(time.perf_counter() - t)
    t = time.perf_counter()
    encode_documents(st_model, PROBE_DOCS)
    docs_s = len(PROBE_DOCS) / (time.perf_counter() - t)
    return {"query_p50_ms": float(np.median(ts) * 1000), "docs_per_s": docs_s}


# Another backend replaces PyTorch only when it encodes the catalog this much faster: two timings of the same backend
# on a 2-core EPYC differed by ~2 % (113.7 vs 115.6 docs/s), and a coin-flip choice changes what a run serves (onnx
# brings its int8 catalog gate) and how long it takes.
FASTER_BY = 0.10


def choose_fastest(timings: dict[str, dict[str, float]]) -> str:
    """The backend with the highest catalog throughput, but PyTorch unless another is ``FASTER_BY`` faster (a near tie
    must not flip between runs). One-query latency is the query encoder's own choice (``student.query_backend``,
    reldistill.student.query_encoder), not this one's."""
    best = max(timings, key=lambda b: (timings[b]["docs_per_s"], b == "torch"))
    if "torch" in timings and timings[best]["docs_per_s"] < timings["torch"]["docs_per_s"] * (1 + FASTER_BY):
        return "torch"
    return best


def auto_backend(load_torch, model_dir: Path, digest: str, runtime: Runtime | None = None) -> str:
    """The fastest installed backend for this student on this CPU (measured once, then read from the cache)."""
    installed = rt.installed_backends()

    def measure(b: str) -> dict[str, float]:
        m = load_torch()
        if b != "torch":
            rt.attach_runtime(m, b, model_dir, digest, runtime=runtime)
        return time_backend(m)

    key = choice_key(f"throughput+{FASTER_BY:.0%}", rt.cpu_signature(), digest, ",".join(installed))  # rule + CPU + weights
    return measured_choice(BATCH, key, digest, installed, measure, choose_fastest, runtime)[0]


def set_max_seq_length(model, n: int) -> None:
    """Cap the student's input tokens at ``n``; static-embedding students (no positions) have no cap to set."""
    prop = getattr(type(model[0]), "max_seq_length", None)
    if isinstance(prop, property) and prop.fset is None:
        return
    model.max_seq_length = n


def autocast(model, runtime: Runtime | None = None):
    """bf16 autocast for the student's device when the student precision (of ``runtime``, default the one the model
    was loaded with) resolves to bf16, else a no-op."""
    device = getattr(model, "device", torch.device("cpu")).type
    if device not in ("cpu", "cuda") or student_dtype(runtime=runtime or student_runtime(model)) != torch.bfloat16:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16)


def _encode(model, texts: list[str], kind: str, batch_size: int, show_progress: bool,
            runtime: Runtime | None) -> np.ndarray:
    prompt = (getattr(model, "prompts", None) or {}).get(kind) or None
    with autocast(model, runtime):
        emb = model.encode(list(texts), prompt=prompt, batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=show_progress)
    return np.ascontiguousarray(emb, dtype=np.float32)


def encode_queries(model, texts: list[str], batch_size: int = 64, show_progress: bool = False, *,
                   runtime: Runtime | None = None) -> np.ndarray:
    """L2-normalised float32 query embeddings (query prompt applied if the model has one; ``runtime``: its student
    precision, default the one the model was loaded with)."""
    return _encode(model, texts, "query", batch_size, show_progress, runtime)


def encode_documents(model, texts: list[str], batch_size: int = 64, show_progress: bool = False, *,
                     runtime: Runtime | None = None) -> np.ndarray:
    """L2-normalised float32 document embeddings (document prompt applied if the model has one; ``runtime``: as for
    ``encode_queries``)."""
    return _encode(model, texts, "document", batch_size, show_progress, runtime)
