"""Numeric precision choices shared by the teacher and the student: bf16 where the hardware runs it natively.

``parse_dtype`` (reldistill.settings) is the one parser of a dtype setting (recipe keys, CLI flags, environment): it
needs no torch, so config classes validate with it at load time. What this process may use (``RELDISTILL_CPU_BF16``,
the student's precision, the world size) comes in a ``Runtime`` (reldistill.settings).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from reldistill.settings import PRECISION_ENV, Runtime, parse_dtype

if TYPE_CHECKING:
    import torch


SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


@functools.cache
def cpu_info() -> dict:
    """This CPU's model name and which of the SIMD / matrix flags that change kernels it has (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "flags": [f for f in SPEED_FLAGS if f in flags]}


def cpu_has_bf16(runtime: Runtime | None = None) -> bool:
    """True when this CPU has native bf16 (AVX512-BF16 or AMX) and ``runtime`` lets it be used ($RELDISTILL_CPU_BF16)."""
    if runtime is not None and not runtime.cpu_bf16:
        return False
    flags = cpu_info()["flags"]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, where: str = "precision", runtime: Runtime | None = None) -> torch.dtype:
    """``parse_dtype(dtype)`` as a torch dtype; 'auto' → bf16 where the hardware has it (CUDA with bf16, or
    a CPU with AVX512-BF16/AMX), else fp32."""
    import torch

    name = parse_dtype(dtype, where)
    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16(runtime) else torch.float32


def student_dtype(setting: str | None = None, runtime: Runtime | None = None) -> torch.dtype:
    """The student's compute dtype: ``setting``, else the runtime's ($RELDISTILL_STUDENT_PRECISION), else auto.

    bf16 autocast (fp32 weights) nearly doubles MiniLM encoding on an AVX512-BF16 CPU with
    embeddings at cosine ≥ 0.9999 to fp32 (the eval stage's bench module measures both).
    """
    runtime = runtime or Runtime()
    if not setting or parse_dtype(setting) == "auto":
        chosen = runtime.student_precision
        return resolve_dtype(chosen, f"${PRECISION_ENV}" if chosen != "auto" else "precision", runtime)
    return resolve_dtype(setting, runtime=runtime)


def reset_accelerate_state(runtime: Runtime | None = None) -> None:
    """Forget accelerate's process-global state (in-process runs only: demo, tests, notebooks).

    An earlier Accelerator or Trainer in the same process fixes one mixed precision for good; the
    teacher (bf16 or fp32) and the students (their own precision) each start from a clean state.
    """
    if (runtime or Runtime()).world_size != 1:
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
