"""Numeric precision choices shared by the teacher and the student: bf16 where the hardware runs it natively."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

PRECISION_ENV = "RELDISTILL_STUDENT_PRECISION"  # auto | float32 | bfloat16 for student encoding and training
CPU_BF16_ENV = "RELDISTILL_CPU_BF16"  # 0: act as a CPU without native bf16 (what an AVX2-only machine does)


SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


@functools.cache
def cpu_info() -> dict:
    """This CPU's model name and which of the SIMD / matrix flags that change kernels it has (Linux /proc/cpuinfo)."""
    import platform

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


def cpu_has_bf16() -> bool:
    """True when this CPU has native bf16 (AVX512-BF16 or AMX) and $RELDISTILL_CPU_BF16 is not 0."""
    if os.environ.get(CPU_BF16_ENV, "").strip() in ("0", "false", "no"):
        return False
    flags = cpu_info()["flags"]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str) -> torch.dtype:
    """'auto' → bf16 where the hardware has it (CUDA with bf16, or a CPU with AVX512-BF16/AMX), else fp32."""
    if dtype in ("float32", "fp32"):
        return torch.float32
    if dtype in ("bfloat16", "bf16"):
        return torch.bfloat16
    if dtype != "auto":
        from reldistill.errors import UserError

        raise UserError(f"precision must be auto, float32 or bfloat16 — got {dtype!r}.")
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def student_dtype(setting: str | None = None) -> torch.dtype:
    """The student's compute dtype: ``setting``, else $RELDISTILL_STUDENT_PRECISION, else auto.

    bf16 autocast (fp32 weights) nearly doubles MiniLM encoding on an AVX512-BF16 CPU with
    embeddings at cosine ≥ 0.9999 to fp32 (the eval stage's bench module measures both).
    """
    if not setting or setting == "auto":
        setting = os.environ.get(PRECISION_ENV) or "auto"
    return resolve_dtype(setting.lower())


def reset_accelerate_state() -> None:
    """Forget accelerate's process-global state (in-process runs only: demo, tests, notebooks).

    An earlier Accelerator or Trainer in the same process fixes one mixed precision for good; the
    teacher (bf16 or fp32) and the students (their own precision) each start from a clean state.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) != 1:
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
