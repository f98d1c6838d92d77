"""Runtime settings: how this process runs — student backends, int8 and precision, the teacher's prefix-KV, int8 and
score memo, bf16 use, caches, threads, the hub, the service key.

Resolved once, at the edge (the CLI, the service, the workflow), from the recipe and the environment, then passed
down as one frozen object: library code takes a ``Runtime`` argument and never reads the environment. This is the one
module that reads ``os.environ``. ``Runtime()`` holds the library defaults (what the recipe's defaults say, no
environment); ``Runtime.from_env(student=recipe.student)`` is what a command runs with (the environment wins over the
recipe, as documented for each ``RELDISTILL_*`` variable).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MEMO_PAIRS = 100_000
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
RECORDED_ENV = ("OMP_NUM_THREADS",)


def _default_cache() -> Path:
    return Path.home() / ".cache" / "reldistill"


@dataclass(frozen=True)
class Runtime:
    """One process's runtime settings (see the module docstring). Every field has the library default."""

    student_backend: str = "auto"  # auto | torch | onnx | openvino   ($RELDISTILL_STUDENT_BACKEND, student.backend)
    student_query_backend: str = "auto"  # ($RELDISTILL_STUDENT_QUERY_BACKEND, student.query_backend)
    student_int8: str = "off"  # auto | off   ($RELDISTILL_STUDENT_INT8, student.int8)
    student_precision: str = "auto"  # auto | float32 | bfloat16   ($RELDISTILL_STUDENT_PRECISION)
    teacher_int8: str | None = None  # auto | off; None: auto on a CPU without native bf16   ($RELDISTILL_TEACHER_INT8)
    teacher_prefix_kv: bool = True  # ($RELDISTILL_TEACHER_PREFIX_KV=0 turns it off)
    teacher_memo_pairs: int = DEFAULT_MEMO_PAIRS  # ($RELDISTILL_TEACHER_MEMO_PAIRS)
    cpu_bf16: bool = True  # False: treat this CPU as one without native bf16   ($RELDISTILL_CPU_BF16=0)
    cache_dir: Path = field(default_factory=_default_cache)  # ($RELDISTILL_CACHE)
    gguf_cache: bool = True  # ($RELDISTILL_NO_GGUF_CACHE turns it off)
    hub_offline: bool = False  # ($HF_HUB_OFFLINE / $TRANSFORMERS_OFFLINE)
    threads_pinned: bool = False  # the user chose the thread count ($OMP_NUM_THREADS): "auto" threads keep it
    world_size: int = 1  # ($WORLD_SIZE, set by accelerate / torchrun)
    log_level: str | None = None  # ($RELDISTILL_LOG)
    api_key: str | None = field(default=None, repr=False)  # the service's key ($RELDISTILL_API_KEY)
    recorded_env: tuple[tuple[str, str], ...] = ()  # RELDISTILL_* and thread settings, secrets left out: provenance

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, student: Any = None, **overrides: Any) -> "Runtime":
        """The settings a command runs with: ``student`` (the recipe's student section) where given, the environment
        over it, then ``overrides`` (explicit command-line choices). Bad values raise one-sentence UserErrors."""
        raise NotImplementedError  # filled in by the settings work (issue 25)
