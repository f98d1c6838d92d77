"""Student inference backends: PyTorch, ONNX Runtime or OpenVINO behind the same SentenceTransformer.

``Runtime.student_backend`` (the recipe's ``student.backend``, or ``$RELDISTILL_STUDENT_BACKEND``):
``auto | torch | onnx | openvino``.
The non-torch backends run one ONNX export of the student's transformer (``torch.onnx.export``,
dynamic batch and sequence axes); sentence-transformers keeps its own tokenizer, prompts, pooling,
normalisation and batching — only the transformer module's ``model`` is swapped for a runtime session,
as sentence-transformers' own ``backend=`` does through optimum (which needs transformers < 5 here).

The export is written once beside the student folder (``<student>.exports/<weights digest>/``; models
installed in site-packages export under the runtime's cache folder) and reused while the weights digest is
the same. ``auto`` times each installed backend once on this machine (reldistill.student.runtime_choice; batch
throughput — queries are the query encoder's: reldistill.student.query_encoder) and caches the choice keyed by CPU
model + flags + student weights. A backend that is not installed (or cannot export) falls back to torch with one
log line.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reldistill.artifacts import atomic_path
from reldistill.errors import UserError
from reldistill.gguf_cache import cache_root
from reldistill.precision import cpu_info, student_dtype
from reldistill.settings import Runtime

log = logging.getLogger(__name__)

INT8_MAX_DROP = 0.005  # dev nDCG@10 an int8 export may lose against fp32 and still be used
ONNX_FILE = "model.onnx"
# int8 weights, one scale per output channel, of every MatMul with a constant weight (activations quantised per call):
# on the demo's MiniLM, per-tensor scales lost 0.018 dev nDCG@10 on int8 queries, per-channel 0.003, at the same speed
INT8_SCHEME = "dynamic-qint8-per-channel-matmul"
INT8_FILE = "model-int8-per-channel.onnx"
EXPORT_META = "export.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")

def int8_verdict(model_dir: Path, digest: str, key: str = "int8", runtime: Runtime | None = None) -> dict[str, Any] | None:
    """The recorded dev-nDCG@10 gate of this student's int8 export (None until measured, or measured on an
    export of another quantisation scheme). ``key``: see ``record_int8_verdict``."""
    verdict = read_meta(exports_dir(model_dir, digest, runtime)).get(key)
    return verdict if verdict and verdict.get("scheme") == INT8_SCHEME else None


def record_int8_verdict(model_dir: Path, digest: str, fp32_ndcg: float, int8_ndcg: float, catalog: str,
                        key: str = "int8", runtime: Runtime | None = None, **extra: Any) -> dict[str, Any]:
    """Store the gate's measurement beside the export: int8 is used only when it lost < ``INT8_MAX_DROP``.

    ``key``: "int8" (catalog and queries through the int8 export) or "query_int8" (queries only, against
    the catalog vectors the index holds, as the batch backend encoded them)."""
    verdict = {"dev_ndcg10_fp32": fp32_ndcg, "dev_ndcg10_int8": int8_ndcg, "drop": fp32_ndcg - int8_ndcg,
               "max_drop": INT8_MAX_DROP, "kept": fp32_ndcg - int8_ndcg < INT8_MAX_DROP, "catalog": catalog,
               "scheme": INT8_SCHEME, "cpu": cpu_signature(), **extra,
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _update_meta(exports_dir(model_dir, digest, runtime), **{key: verdict})
    return verdict


def query_int8_verdict(model_dir: Path, digest: str, runtime: Runtime | None = None) -> dict[str, Any] | None:
    """The recorded dev-nDCG@10 gate of int8 *queries* against this student's indexed catalog (None until measured,
    or measured on another CPU: int8 kernels differ by ISA, e.g. VNNI vs AVX2's saturating u8s8 — queries stay fp32
    there until the next index build measures them)."""
    verdict = int8_verdict(model_dir, digest, key="query_int8", runtime=runtime)
    return verdict if verdict and verdict.get("cpu") == cpu_signature() else None


def runtime_installed(backend: str) -> bool:
    """Whether the runtime of ``backend`` imports (torch always does)."""
    mod = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}[backend]
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def installed_backends() -> list[str]:
    return [b for b in ("torch", "onnx", "openvino") if runtime_installed(b)]


@functools.cache
def cpu_signature() -> str:
    """CPU model name and the SIMD flags that change which kernels run (AVX2, AVX-512, bf16, AMX, VNNI)."""
    info = cpu_info()
    return f"{info['model']} [{' '.join(info['flags'])}] x{os.cpu_count()}"


# ---- export -------------------------------------------------------------------------------------
def exports_dir(model_dir: Path, digest: str, runtime: Runtime | None = None) -> Path:
    """Where the exports of a student folder live: beside it, or under the runtime's cache folder for installed models."""
    model_dir = Path(model_dir).resolve()
    if "site-packages" in model_dir.parts or not os.access(model_dir.parent, os.W_OK):
        return cache_root(runtime) / "student-exports" / f"{model_dir.name}-{digest[:16]}"
    return model_dir.parent / f"{model_dir.name}.exports" / digest[:16]


class _Wrapped(torch.nn.Module):
    """The transformer's forward with named inputs in a fixed order (what the exporter traces)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state


def export_onnx(st_model, out: Path) -> Path:
    """Export the student's transformer (input ids/mask[/token types] → last_hidden_state) to ``out``."""
    hf = st_model[0].model.eval()
    feats = st_model[0].preprocess(["a short query", "a somewhat longer product title with brand and colour"])
    names = tuple(n for n in INPUTS if n in feats)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=int(hf.config.max_position_embeddings))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, torch.no_grad(), _quiet():
        torch.onnx.export(_Wrapped(hf), tuple(feats[n] for n in names), str(tmp), input_names=list(names),
                          output_names=["last_hidden_state"],
                          dynamic_shapes={n: {0: batch, 1: seq} if n in names else None for n in INPUTS},
                          dynamo=True, external_data=False, verbose=False)
    return out


@contextlib.contextmanager
def _quiet(quiet: logging.Logger | None = None):
    """Silence the exporter's (or ``quiet``'s) progress prints and warnings (they are not the user's business)."""
    quiet = quiet or logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        quiet.setLevel(level)


def quantize_int8(src: Path, out: Path) -> Path:
    """Dynamic int8 quantisation of the exported graph's MatMul weights, per output channel (ONNX Runtime's
    quantize_dynamic; ``INT8_SCHEME``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(out) as tmp, _quiet(logging.getLogger()):  # its "consider pre-processing" line is not the user's business
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True)
    return out


def ensure_export(st_model, model_dir: Path, digest: str, int8: bool = False, runtime: Runtime | None = None) -> Path:
    """The ONNX file of this student (exported once per weights digest; int8 derived from it)."""
    d = exports_dir(model_dir, digest, runtime)
    onnx_path = d / ONNX_FILE
    if not onnx_path.is_file():
        t = time.perf_counter()
        export_onnx(st_model, onnx_path)
        _update_meta(d, weights=digest, exported_from=str(model_dir), export_seconds=round(time.perf_counter() - t, 2))
        log.info("exported %s to %s", model_dir, onnx_path)
    if not int8:
        return onnx_path
    q = d / INT8_FILE
    if not q.is_file():
        quantize_int8(onnx_path, q)
    return q


def read_meta(d: Path) -> dict[str, Any]:
    try:
        return json.loads((d / EXPORT_META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _update_meta(d: Path, **fields: Any) -> None:
    meta = read_meta(d) | fields
    with atomic_path(d / EXPORT_META) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1), encoding="utf-8")


# ---- runtime sessions -----------------------------------------------------------------------------
def ort_session(onnx_path: Path, threads: int):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (all graph optimisations, quiet)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


class RuntimeModel(torch.nn.Module):
    """Stands in for the HF transformer inside sentence-transformers' Transformer module.

    ``forward(input_ids, attention_mask, token_type_ids)`` runs an ONNX Runtime session or an OpenVINO
    compiled model, created once and reused by every call, and returns ``last_hidden_state``. Small
    inputs (one short query: up to ``SMALL_TOKENS`` tokens) run on a one-thread session: splitting
    a few hundred tokens across cores costs more than it saves, the more so on a busy machine.
    """

    SMALL_TOKENS = 256

    def __init__(self, backend: str, onnx_path: Path, config, threads: int | None = None, runtime: Runtime | None = None):
        super().__init__()
        if backend not in ("onnx", "openvino"):
            raise UserError(f"unknown runtime backend {backend!r}.")
        self.backend, self.path, self.config = backend, Path(onnx_path), config
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.threads = threads or torch.get_num_threads()
        self.precision = "f32"
        self.runtime = runtime or Runtime()  # the student precision OpenVINO runs in
        self._runners: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.input_names = self._runner(self.threads)[0]

    def _runner(self, threads: int):
        """(input names, run(feed) → last_hidden_state) on ``threads`` threads, built on first use."""
        with self._lock:
            if threads not in self._runners:
                self._runners[threads] = self._ort(threads) if self.backend == "onnx" else self._ov(threads)
            return self._runners[threads]

    def _ort(self, threads: int):
        session = ort_session(self.path, threads)
        return tuple(i.name for i in session.get_inputs()), lambda feed: session.run(None, feed)[0]

    def _ov(self, threads: int):
        import openvino as ov

        core = ov.Core()
        bf16 = student_dtype(runtime=self.runtime) == torch.bfloat16 and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self.precision = "bf16" if bf16 else "f32"
        compiled = core.compile_model(core.read_model(str(self.path)), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": self.precision})
        request, lock = compiled.create_infer_request(), threading.Lock()

        def run(feed):
            with lock:  # one infer request, reused; a request is not thread-safe
                return request.infer(feed)[0].copy()

        return tuple(i.get_any_name() for i in compiled.inputs), run

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_: Any) -> dict[str, torch.Tensor]:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed = {}
        for n in self.input_names:
            v = given.get(n)
            if v is None:
                v = torch.ones_like(input_ids) if n == "attention_mask" else torch.zeros_like(input_ids)
            feed[n] = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        small = input_ids.shape[0] * input_ids.shape[1] <= self.SMALL_TOKENS
        _, run = self._runner(1 if small else self.threads)
        return {"last_hidden_state": torch.from_numpy(run(feed))}


def attach_runtime(st_model, backend: str, model_dir: Path, digest: str, int8: bool = False,
                   runtime: Runtime | None = None) -> None:
    """Swap the student's transformer for a ``backend`` session over its (cached) ONNX export (int8: ONNX Runtime only)."""
    if int8 and backend != "onnx":
        raise UserError("the int8 student export runs on ONNX Runtime only — use student.backend: onnx.")
    path = ensure_export(st_model, model_dir, digest, int8=int8, runtime=runtime)
    first = st_model[0]
    # the PyTorch transformer stays reachable for the query encoder (set past nn.Module: not a submodule)
    object.__setattr__(st_model, "reldistill_hf", first.model)
    first.model = RuntimeModel(backend, path, first.model.config, runtime=runtime)
    st_model.reldistill_backend = backend + ("-int8" if int8 else "")
