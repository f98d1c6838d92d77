"""Numeric precision choices shared by the teacher and the student: bf16 where the hardware runs it natively.

``parse_dtype`` is the one parser of a dtype setting (recipe keys, CLI flags, environment): it needs
no torch, so config classes validate with it at load time.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from reldistill.errors import UserError

if TYPE_CHECKING:
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


DTYPE_NAMES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "auto": "auto"}


def parse_dtype(value: object, where: str = "dtype") -> str:
    """A dtype setting ('fp32' | 'bf16' | 'auto', or 'float32' | 'bfloat16'; any case) → 'float32' | 'bfloat16' | 'auto'."""
    name = DTYPE_NAMES.get(str(value).strip().lower())
    if name is None:
        raise UserError(f"{where} must be one of auto, float32 (fp32), bfloat16 (bf16) — got {value!r}.")
    return name


def resolve_dtype(dtype: str, where: str = "precision") -> torch.dtype:
    """``parse_dtype(dtype)`` as a torch dtype; 'auto' → bf16 where the hardware has it (CUDA with bf16, or
    a CPU with AVX512-BF16/AMX), else fp32."""
    import torch

    name = parse_dtype(dtype, where)
    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def student_dtype(setting: str | None = None) -> torch.dtype:
    """The student's compute dtype: ``setting``, else $RELDISTILL_STUDENT_PRECISION, else auto.

    bf16 autocast (fp32 weights) nearly doubles MiniLM encoding on an AVX512-BF16 CPU with
    embeddings at cosine ≥ 0.9999 to fp32 (the eval stage's bench module measures both).
    """
    if not setting or parse_dtype(setting) == "auto":
        env = os.environ.get(PRECISION_ENV)
        return resolve_dtype(env or "auto", f"${PRECISION_ENV}" if env else "precision")
    return resolve_dtype(setting)


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
