"""The one-query encoder every search, serve and eval query goes through: tokenise → forward → pool → normalise.

A short query costs ~0.2 GFLOP in MiniLM; through ``SentenceTransformer.encode`` most of its time is
bookkeeping (length sort, batching, device moves, autocast) and PyTorch's multi-thread op dispatch.
``QueryEncoder`` keeps only the work: sentence-transformers' own tokenisation (same prompt, truncation
and special tokens), one forward on a runtime chosen for single-query latency — an ONNX Runtime or
OpenVINO session on one thread, created once and reused, or the PyTorch model itself — then the
student's pooling and L2 normalisation in numpy. Queries are encoded one at a time (no padding), so a
query's vector is the same whether it came alone (search, serve) or in a list (eval).

``Runtime.student_query_backend`` (the recipe's ``student.query_backend``, or ``$RELDISTILL_STUDENT_QUERY_BACKEND``):
auto | torch | onnx | openvino; auto = the lowest measured single-query p50 on this CPU (measured once and cached by
the batch choice's mechanism, reldistill.student.runtime_choice). With ``student.int8: auto`` and a kept query-int8 dev gate (measured at index build:
reldistill.retrieval.build.query_int8_gate), auto also measures "onnx-int8": the int8 export on ONNX
Runtime for queries only, the catalog vectors staying as they are. A student whose modules are not
transformer → pooling (mean / cls / max) → optional normalise (e.g. a static-embedding student, or
prompt-excluding pooling) keeps the plain ``encode_queries`` path.

One thread per query, also where two would be faster alone: serve answers concurrent requests on a thread
pool, and on a 2-core machine a second intra-op thread per query competes with the other request (and BM25).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from reldistill.settings import Runtime, check_backend
from reldistill.student import backend as rt
from reldistill.student.encode import encode_queries, student_runtime
from reldistill.student.runtime_choice import QUERY, choice_key, measured_choice

log = logging.getLogger(__name__)

POOLING = ("mean", "cls", "max")
PROBE_QUERIES = ("wireless noise cancelling headphones", "usb c cable 6ft", "kids water bottle bpa free",
                 "running shoes men size 10 wide")

FEATURES = ("input_ids", "attention_mask", "token_type_ids")

def lean_plan(st_model) -> dict[str, Any] | None:
    """Pooling mode and normalisation when the student is transformer → pooling [→ normalise]; else None."""
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    mods = list(st_model)
    if len(mods) not in (2, 3) or not isinstance(mods[0], Transformer) or not isinstance(mods[1], Pooling):
        return None
    if len(mods) == 3 and not isinstance(mods[2], Normalize):
        return None
    pool = mods[1]
    mode = getattr(pool, "pooling_mode", None)
    if mode not in POOLING:
        return None
    prompt = (getattr(st_model, "prompts", None) or {}).get("query") or None
    if prompt and not getattr(pool, "include_prompt", True):
        return None  # prompt tokens excluded from pooling: ST's own path knows the prompt length
    return {"pooling": mode, "prompt": prompt}


class QueryEncoder:
    """``encode(queries)`` → (n, dim) float32, L2-normalised, one forward per query on ``runtime``.

    ``runtime``: "torch" (the student's own PyTorch transformer), "onnx" / "onnx-int8" / "openvino" (a
    one-thread session over the student's fp32 or int8 ONNX export), or "plain" (``encode_queries``:
    students the lean path does not cover). Thread-safe: ONNX Runtime and PyTorch sessions are re-entrant;
    OpenVINO keeps one infer request per calling thread.
    """

    def __init__(self, st_model, runtime: str = "torch", onnx_path: Path | None = None):
        self.model, self.runtime = st_model, runtime
        self.int8_gate: dict[str, Any] | None = None  # the dev-gate verdict that admitted an int8 runtime
        self.plan = lean_plan(st_model) if runtime != "plain" else None
        if self.plan is None:
            self.runtime = "plain"
            return
        self._first = st_model[0]
        self._normalize = len(list(st_model)) == 3
        self._tokenizer = self._direct_tokenizer()
        self._forward = self._torch_forward() if runtime == "torch" else self._session_forward(runtime, onnx_path)

    # ---- forward on each runtime -----------------------------------------------------------------
    def _torch_forward(self):
        import torch

        hf = getattr(self.model, "reldistill_hf", None) or self._first.model  # the HF model a runtime replaced

        def run(feats: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                out = hf(**{k: torch.from_numpy(v).to(hf.device) for k, v in feats.items()})
            return out.last_hidden_state.float().cpu().numpy()

        return run

    def _session_forward(self, runtime: str, onnx_path: Path | None):
        if onnx_path is None:
            raise ValueError("an ONNX Runtime / OpenVINO query encoder needs the student's ONNX export")
        if runtime in ("onnx", "onnx-int8"):
            session = rt.ort_session(onnx_path, threads=1)
            names = tuple(i.name for i in session.get_inputs())

            def run(feed):
                return session.run(None, feed)[0]
        else:  # OpenVINO: one infer request per calling thread (a request is not re-entrant)
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", {
                "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
            names = tuple(i.get_any_name() for i in compiled.inputs)
            local = threading.local()

            def run(feed):
                if not hasattr(local, "request"):
                    local.request = compiled.create_infer_request()
                return local.request.infer(feed)[0]

        def forward(feats: dict[str, np.ndarray]) -> np.ndarray:
            feed = {n: feats[n] if n in feats else (np.ones_like(feats["input_ids"]) if n == "attention_mask"
                                                    else np.zeros_like(feats["input_ids"])) for n in names}
            return np.asarray(run(feed), dtype=np.float32)

        return forward

    # ---- the path -----------------------------------------------------------------------------------
    def _st_features(self, query: str) -> dict[str, np.ndarray]:
        """sentence-transformers' own tokenisation of ``query`` (with the query prompt), as int64 arrays."""
        f = self._first.preprocess([query], prompt=self.plan["prompt"])
        return {k: v.numpy().astype(np.int64, copy=False) for k, v in f.items() if k in FEATURES}

    def _direct_tokenizer(self):
        """The HF tokenizer called directly (prompt + query, truncated to the student's max_seq_length) —
        kept only when it gives sentence-transformers' features on probe queries, a long one included."""
        tok, n = getattr(self.model, "tokenizer", None), getattr(self._first, "max_seq_length", None)
        if tok is None or not callable(tok) or not n:
            return None
        prompt = self.plan["prompt"] or ""

        def direct(query: str) -> dict[str, np.ndarray]:
            f = tok(prompt + query, truncation=True, max_length=n, return_tensors="np")
            return {k: np.asarray(v, dtype=np.int64) for k, v in f.items() if k in FEATURES}

        probes = [*PROBE_QUERIES, "Émile's 2-pack USB-C → HDMI 4K@60Hz", " ".join(["long"] * (2 * n))]
        try:
            same = all(_same_features(direct(q), self._st_features(q)) for q in probes)
        except Exception:  # noqa: BLE001 - a tokenizer that cannot be called this way keeps ST's path
            same = False
        return direct if same else None

    def features(self, query: str) -> dict[str, np.ndarray]:
        """Input arrays for one query, identical to sentence-transformers' tokenisation of it."""
        return self._tokenizer(query) if self._tokenizer is not None else self._st_features(query)

    def pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The student's pooling over one query's tokens, then L2 normalisation when the student has it."""
        h = hidden[0].astype(np.float32, copy=False)
        m = mask[0].astype(bool)
        mode = self.plan["pooling"]
        v = h[0] if mode == "cls" else (h[m].max(axis=0) if mode == "max" else h[m].sum(axis=0) / max(int(m.sum()), 1))
        if self._normalize:
            v = v / max(float(np.linalg.norm(v)), 1e-12)
        return v.astype(np.float32, copy=False)

    def encode_one(self, query: str) -> np.ndarray:
        if self.runtime == "plain":
            return encode_queries(self.model, [query])[0]
        feats = self.features(query)
        return self.pool(self._forward(feats), feats["attention_mask"])

    def encode(self, queries: list[str]) -> np.ndarray:
        """(len(queries), dim) float32: each query encoded alone, exactly as a search request encodes it."""
        if self.runtime == "plain" and len(queries) > 1:
            return np.stack([encode_queries(self.model, [q])[0] for q in queries])
        return np.stack([self.encode_one(q) for q in queries]) if queries else np.zeros((0, 0), np.float32)

    def timings(self, query: str, repeats: int = 20) -> dict[str, float]:
        """Median ms of each step on ``query`` (tokenise, forward, pool) and of the whole encode."""
        steps: dict[str, list[float]] = {"tokenise_ms": [], "forward_ms": [], "pool_ms": [], "total_ms": []}
        self.encode_one(query)
        for _ in range(repeats):
            t0 = time.perf_counter()
            if self.runtime == "plain":
                self.encode_one(query)
            else:
                feats = self.features(query)
                t1 = time.perf_counter()
                hidden = self._forward(feats)
                t2 = time.perf_counter()
                self.pool(hidden, feats["attention_mask"])
                steps["tokenise_ms"].append((t1 - t0) * 1000)
                steps["forward_ms"].append((t2 - t1) * 1000)
                steps["pool_ms"].append((time.perf_counter() - t2) * 1000)
            steps["total_ms"].append((time.perf_counter() - t0) * 1000)
        return {k: float(np.median(v)) for k, v in steps.items() if v}


def _same_features(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---- which runtime: measured once per CPU, student and installed runtimes (reldistill.student.runtime_choice) ----
def query_p50_ms(encoder: QueryEncoder, rounds: int = 10) -> float:
    """Median ms of one probe query through ``encoder`` (after a warm-up)."""
    encoder.encode_one(PROBE_QUERIES[0])
    ts = []
    for _ in range(rounds):
        for q in PROBE_QUERIES:
            t = time.perf_counter()
            encoder.encode_one(q)
            ts.append((time.perf_counter() - t) * 1000)
    return float(np.median(ts))


def _build(st_model, runtime: str, model_dir: Path | None, digest: str | None, settings: Runtime | None = None) -> QueryEncoder:
    if runtime == "torch":
        return QueryEncoder(st_model, "torch")
    onnx_path = rt.ensure_export(st_model, model_dir, digest, int8=runtime == "onnx-int8", runtime=settings)
    return QueryEncoder(st_model, runtime, onnx_path)


def int8_gate_of(model_dir: Path | None, digest: str | None, runtime: Runtime | None = None) -> dict[str, Any] | None:
    """The kept query-int8 dev-gate verdict of this student (int8 queries against its indexed catalog), else None;
    only with ``student.int8: auto`` (``runtime.student_int8``) and ONNX Runtime installed."""
    runtime = runtime or Runtime()
    if digest is None or model_dir is None or runtime.student_int8 != "auto" or not rt.runtime_installed("onnx"):
        return None
    verdict = rt.query_int8_verdict(Path(model_dir), digest, runtime)
    return verdict if verdict and verdict.get("kept") else None


def query_candidates(model_dir: Path | None, digest: str | None, runtime: Runtime | None = None) -> list[str]:
    """The runtimes auto measures: the installed ones, plus "onnx-int8" where its query dev gate passed."""
    return rt.installed_backends() + (["onnx-int8"] if int8_gate_of(model_dir, digest, runtime) else [])


def choose_query_runtime(st_model, model_dir: Path, digest: str, candidates: list[str],
                         runtime: Runtime | None = None) -> tuple[str, dict[str, float]]:
    """(runtime with the lowest single-query p50, {runtime: p50 ms}) — measured now, or read from the cache."""
    key = choice_key(rt.cpu_signature(), digest, ",".join(candidates))
    return measured_choice(QUERY, key, digest, candidates,
                           lambda c: query_p50_ms(_build(st_model, c, model_dir, digest, runtime)),
                           lambda p50: min(p50, key=lambda r: (p50[r], r != "torch")), runtime)


def _runtime_choice(st_model, setting: str | None, runtime: Runtime) -> str:
    """The runtime ``setting`` (default ``runtime.student_query_backend``) names for this student, before auto."""
    _, digest = getattr(st_model, "reldistill_source", (None, None))
    choice = check_backend(setting, "query_backend") if setting else runtime.student_query_backend
    if getattr(st_model, "reldistill_backend", "").endswith("-int8"):
        choice = "onnx-int8"
    if str(getattr(st_model, "device", "cpu")) != "cpu":
        choice = "torch"  # a GPU student encodes its queries on the GPU
    base = choice.removesuffix("-int8")
    if digest is None or (base not in ("auto", "torch") and not rt.runtime_installed(base)):
        if base not in ("auto", "torch"):
            log.warning("query backend %s is not installed (pip install 'reldistill[%s]'); encoding queries with torch",
                        base, base)
        choice = "torch"
    return choice


def query_encoder(st_model, setting: str | None = None, *, runtime: Runtime | None = None) -> QueryEncoder:
    """The student's query encoder (built once per loaded student and kept on it).

    Runs the int8 ONNX export when the student itself runs it (its dev gate passed); otherwise the
    runtime ``setting`` names (default: ``runtime.student_query_backend``; ``runtime`` defaults to the one the student
    was loaded with), auto = the fastest measured of the installed runtimes and, where the query-int8 dev gate passed,
    "onnx-int8". A runtime that is not installed, or a student that is not a folder, falls back to PyTorch.
    """
    cached = getattr(st_model, "reldistill_query_encoder", None)
    if cached is not None and setting is None and runtime is None:
        return cached
    runtime = runtime or student_runtime(st_model)
    if lean_plan(st_model) is None:
        enc = QueryEncoder(st_model, "plain")
    else:
        model_dir, digest = getattr(st_model, "reldistill_source", (None, None))
        student_int8 = getattr(st_model, "reldistill_backend", "").endswith("-int8")
        choice = _runtime_choice(st_model, setting, runtime)
        if choice == "auto":
            choice, _ = choose_query_runtime(st_model, model_dir, digest, query_candidates(model_dir, digest, runtime),
                                             runtime)
        try:
            enc = _build(st_model, choice, model_dir, digest, runtime)
            if choice == "onnx-int8":
                enc.int8_gate = (rt.int8_verdict(Path(model_dir), digest, runtime=runtime) if student_int8
                                 else int8_gate_of(model_dir, digest, runtime))
        except Exception as e:  # noqa: BLE001 - an export or runtime failure costs speed, never the query
            log.warning("query backend %s failed (%s: %s); encoding queries with torch", choice, type(e).__name__, e)
            enc = QueryEncoder(st_model, "torch")
    if setting is None:
        st_model.reldistill_query_encoder = enc
    return enc
