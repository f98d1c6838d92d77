"""Load the backbone (full precision, bf16 or 4-bit NF4) and its tokenizer through reldistill.models."""

from __future__ import annotations

import logging
import os

import torch

from reldistill.errors import UserError
from reldistill.gguf_cache import dequantized
from reldistill.models import ResolvedModel, resolve_model
from reldistill.settings import Runtime

log = logging.getLogger(__name__)


def resolve_base(name_or_path: str | os.PathLike, runtime: Runtime | None = None) -> ResolvedModel:
    return resolve_model(str(name_or_path), runtime)


def load_tokenizer(source: ResolvedModel | str | os.PathLike, runtime: Runtime | None = None):
    from transformers import AutoTokenizer

    r = dequantized(source if isinstance(source, ResolvedModel) else resolve_model(str(source), runtime), runtime)
    try:
        return AutoTokenizer.from_pretrained(**r.from_pretrained_kwargs(), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the tokenizer of {r.name!r} from {r.path} ({str(e).splitlines()[0][:120]}) — check teacher.model.") from None


def load_backbone(source: ResolvedModel, dtype: torch.dtype = torch.float32, load_in_4bit: bool = False,
                  runtime: Runtime | None = None):
    """The bare base model (``AutoModel``: no LM head) in ``dtype``, or NF4-quantised for QLoRA."""
    from transformers import AutoModel

    kw = dequantized(source, runtime).from_pretrained_kwargs()
    if load_in_4bit:
        check_4bit("cuda" if torch.cuda.is_available() else "cpu")
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.float32)
        if not torch.cuda.is_available():
            kw["device_map"] = {"": "cpu"}
    try:
        return AutoModel.from_pretrained(**kw, dtype=dtype, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the teacher backbone {source.name!r} from {source.path} "
                        f"({str(e).splitlines()[0][:160]}) — check teacher.model or reinstall the model.") from None


def has_4bit_kernel(device_type: str) -> bool:
    """Whether the installed bitsandbytes registers a 4-bit (NF4) kernel for ``device_type`` (cpu, cuda, xpu, ...)."""
    try:
        import bitsandbytes  # noqa: F401 - registers its torch ops
    except ImportError:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA", "xpu": "XPU", "mps": "MPS", "hpu": "HPU"}.get(device_type, device_type.upper())
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key("bitsandbytes::dequantize_4bit", key))
    except RuntimeError:  # no such op: an older bitsandbytes (CUDA only)
        return device_type == "cuda"


def check_4bit(device_type: str) -> None:
    """``teacher.load_in_4bit`` where bitsandbytes cannot run it: one sentence, before any weights load."""
    if not has_4bit_kernel(device_type):
        raise UserError(f"teacher.load_in_4bit needs a bitsandbytes 4-bit kernel for {device_type}, and the installed "
                        "bitsandbytes has none — set teacher.load_in_4bit: false (`teacher plan` shows the bf16 memory beside "
                        "the 4-bit figure) or train on a device it supports (CUDA).")


def busy_cores(cores: list[int], window_s: float = 0.5) -> float:
    """How many of ``cores`` other processes keep busy now: their CPU use over the next ``window_s`` seconds (psutil),
    less this process's own.

    Not the 1-min load average: it stays high for about a minute after a job ends (and counts this process's
    previous work), so a teacher trained right after another job got 1 thread of 2 for its whole run. Where
    per-core use is not readable, the load average is the fallback."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            me = psutil.Process()
            me.cpu_percent(None)  # starts this process's count over the same window
            use = psutil.cpu_percent(interval=window_s, percpu=True)
            return max(0.0, sum(use[c] for c in cores if c < len(use)) / 100.0 - me.cpu_percent(None) / 100.0)
        except (psutil.Error, OSError):
            pass
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def set_cpu_threads(setting: int | str | None = "auto", runtime: Runtime | None = None) -> int:
    """Pick torch's CPU thread count. ``auto``: the cores not busy now (:func:`busy_cores`), at least 1 — or torch's
    own count where the user pinned it (``runtime.threads_pinned``: $OMP_NUM_THREADS).

    On a shared CPU, OpenMP threads that outnumber free cores spin-wait and run several times
    slower than one thread (measured here: a SmolLM2 LoRA step took 30-60 s on 2 threads and
    ~10 s on 1 thread at load 6 on 2 cores). ``None`` leaves torch's default.
    """
    if setting is None or torch.cuda.is_available():
        return torch.get_num_threads()
    if setting == "auto":
        if (runtime or Runtime()).threads_pinned:
            return torch.get_num_threads()
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
        n = max(1, min(len(cores), int(len(cores) - busy_cores(cores) + 0.5)))
    else:
        n = max(1, int(setting))
    torch.set_num_threads(n)
    return n
