"""Runtime settings: how this process runs — student backends, int8 and precision, the teacher's prefix-KV, int8 and
score memo, bf16 use, caches, threads, the hub, the service key.

Resolved once, at the edge (the CLI, the service, the workflow), from the recipe and the environment, then passed
down as one frozen object: library code takes a ``Runtime`` argument and never reads the environment. This is the one
module that reads ``os.environ``. ``Runtime()`` holds the library defaults (what the recipe's defaults say, no
environment); ``Runtime.from_env(student=recipe.student)`` is what a command runs with (the environment wins over the
recipe, as documented for each ``RELDISTILL_*`` variable).

The environment variables (each one overrides the recipe's setting where there is one):

- ``RELDISTILL_STUDENT_BACKEND`` (student.backend): auto | torch | onnx | openvino — the runtime of batch encoding.
- ``RELDISTILL_STUDENT_QUERY_BACKEND`` (student.query_backend): the same choices, for one-query encoding.
- ``RELDISTILL_STUDENT_INT8`` (student.int8): auto (int8 where its dev gate passed) | off.
- ``RELDISTILL_STUDENT_PRECISION``: auto | float32 | bfloat16 — the student's encode/train dtype where the recipe
  leaves it at auto.
- ``RELDISTILL_TEACHER_INT8``: auto | off (unset: auto on a CPU without native bf16, off where bf16 runs natively).
- ``RELDISTILL_TEACHER_PREFIX_KV``: 0 | off | false | no runs the teacher's full forward (no shared-prefix cache).
- ``RELDISTILL_TEACHER_MEMO_PAIRS``: the teacher's score memo size in pairs (default 100,000; 0 turns it off).
- ``RELDISTILL_CPU_BF16``: 0 | false | no acts as a CPU without native bf16 (what an AVX2-only machine does).
- ``RELDISTILL_CACHE``: the cache folder (default ``~/.cache/reldistill``); ``RELDISTILL_NO_GGUF_CACHE``: any value
  loads GGUF teachers without the dequantised copy.
- ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``: 1 | true | yes forbids hub downloads.
- ``OMP_NUM_THREADS``: set, it pins the thread count ("auto" threads keep torch's); ``WORLD_SIZE`` (accelerate,
  torchrun): the number of processes; ``RELDISTILL_LOG``: the log level; ``RELDISTILL_API_KEY``: the service's key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from reldistill.errors import UserError

DEFAULT_MEMO_PAIRS = 100_000
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
RECORDED_ENV = ("OMP_NUM_THREADS",)  # besides RELDISTILL_*: settings that change what a command measures

BACKEND_ENV = "RELDISTILL_STUDENT_BACKEND"
QUERY_BACKEND_ENV = "RELDISTILL_STUDENT_QUERY_BACKEND"
STUDENT_INT8_ENV = "RELDISTILL_STUDENT_INT8"
PRECISION_ENV = "RELDISTILL_STUDENT_PRECISION"
TEACHER_INT8_ENV = "RELDISTILL_TEACHER_INT8"
PREFIX_KV_ENV = "RELDISTILL_TEACHER_PREFIX_KV"
MEMO_PAIRS_ENV = "RELDISTILL_TEACHER_MEMO_PAIRS"
CPU_BF16_ENV = "RELDISTILL_CPU_BF16"
CACHE_ENV = "RELDISTILL_CACHE"
NO_GGUF_CACHE_ENV = "RELDISTILL_NO_GGUF_CACHE"
LOG_ENV = "RELDISTILL_LOG"
API_KEY_ENV = "RELDISTILL_API_KEY"
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
NO = ("0", "off", "false", "no")

BACKENDS = ("auto", "torch", "onnx", "openvino")
INT8_SETTINGS = ("auto", "off")
DTYPE_NAMES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "auto": "auto"}


def check_backend(setting: str, where: str) -> str:
    """``setting`` as one of BACKENDS (case and spaces ignored); else one UserError naming ``where``."""
    s = str(setting).strip().lower()
    if s not in BACKENDS:
        raise UserError(f"{where} must be one of {', '.join(BACKENDS)} — got {setting!r}.")
    return s


def check_int8(setting: str | bool, where: str) -> str:
    """``setting`` as auto | off (YAML's true/false read as auto/off); else one UserError naming ``where``."""
    s = {True: "auto", False: "off"}.get(setting, setting) if isinstance(setting, bool) else str(setting).strip().lower()
    if s not in INT8_SETTINGS:
        raise UserError(f"{where} must be auto (int8 where its dev nDCG@10 gate passed) or off — got {setting!r}.")
    return s


def parse_dtype(value: object, where: str = "dtype") -> str:
    """A dtype setting ('fp32' | 'bf16' | 'auto', or 'float32' | 'bfloat16'; any case) → 'float32' | 'bfloat16' | 'auto'."""
    name = DTYPE_NAMES.get(str(value).strip().lower())
    if name is None:
        raise UserError(f"{where} must be one of auto, float32 (fp32), bfloat16 (bf16) — got {value!r}.")
    return name


def default_cache() -> Path:
    """The cache folder when $RELDISTILL_CACHE is not set."""
    return Path.home() / ".cache" / "reldistill"


def recorded_env(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The RELDISTILL_* (and thread-count) settings of ``environ``, sorted, secrets left out (provenance records them)."""
    keep = {k: v for k, v in environ.items() if k.startswith("RELDISTILL_") or k in RECORDED_ENV}
    return tuple((k, v) for k, v in sorted(keep.items()) if not any(w in k for w in SECRET_WORDS))


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
    cache_dir: Path = field(default_factory=default_cache)  # ($RELDISTILL_CACHE)
    gguf_cache: bool = True  # ($RELDISTILL_NO_GGUF_CACHE turns it off)
    hub_offline: bool = False  # ($HF_HUB_OFFLINE / $TRANSFORMERS_OFFLINE)
    threads_pinned: bool = False  # the user chose the thread count ($OMP_NUM_THREADS): "auto" threads keep it
    world_size: int = 1  # ($WORLD_SIZE, set by accelerate / torchrun)
    log_level: str | None = None  # ($RELDISTILL_LOG)
    api_key: str | None = field(default=None, repr=False)  # the service's key ($RELDISTILL_API_KEY)
    recorded_env: tuple[tuple[str, str], ...] = ()  # RELDISTILL_* and thread settings, secrets left out: provenance

    def __post_init__(self) -> None:
        object.__setattr__(self, "student_backend", check_backend(self.student_backend, "student backend"))
        object.__setattr__(self, "student_query_backend", check_backend(self.student_query_backend, "student query backend"))
        object.__setattr__(self, "student_int8", check_int8(self.student_int8, "student int8"))
        object.__setattr__(self, "student_precision", parse_dtype(self.student_precision, "student precision"))
        if self.teacher_int8 is not None:
            object.__setattr__(self, "teacher_int8", check_int8(self.teacher_int8, "teacher int8"))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, student: Any = None, **overrides: Any) -> Runtime:
        """The settings a command runs with: ``student`` (the recipe's student section) where given, the environment
        over it, then ``overrides`` (explicit command-line choices). Bad values raise one-sentence UserErrors."""
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        if student is not None:
            kw.update(student_backend=check_backend(student.backend, "student.backend"),
                      student_query_backend=check_backend(student.query_backend, "student.query_backend"),
                      student_int8=check_int8(student.int8, "student.int8"))
        kw.update(student_settings(env))
        kw.update(teacher_settings(env))
        kw.update(process_settings(env))
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown runtime settings: {', '.join(sorted(unknown))}")
        return replace(cls(**kw), **overrides) if overrides else cls(**kw)


def student_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The student's settings the environment sets (only those it sets)."""
    kw: dict[str, Any] = {}
    if env.get(BACKEND_ENV):
        kw["student_backend"] = check_backend(env[BACKEND_ENV], BACKEND_ENV)
    if env.get(QUERY_BACKEND_ENV):
        kw["student_query_backend"] = check_backend(env[QUERY_BACKEND_ENV], QUERY_BACKEND_ENV)
    if env.get(STUDENT_INT8_ENV):
        kw["student_int8"] = check_int8(env[STUDENT_INT8_ENV], STUDENT_INT8_ENV)
    if env.get(PRECISION_ENV):
        kw["student_precision"] = parse_dtype(env[PRECISION_ENV], f"${PRECISION_ENV}")
    return kw


def teacher_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The teacher's int8 mode, prefix-KV and memo size from the environment (defaults where unset)."""
    kw: dict[str, Any] = {}
    raw = env.get(TEACHER_INT8_ENV, "").strip().lower()
    if raw and raw not in INT8_SETTINGS:
        raise UserError(f"${TEACHER_INT8_ENV} must be auto or off, got {raw!r}.")
    kw["teacher_int8"] = raw or None
    kw["teacher_prefix_kv"] = env.get(PREFIX_KV_ENV, "1").strip().lower() not in NO
    raw = env.get(MEMO_PAIRS_ENV, "").strip()
    try:
        kw["teacher_memo_pairs"] = max(int(raw), 0) if raw else DEFAULT_MEMO_PAIRS
    except ValueError:
        raise UserError(f"${MEMO_PAIRS_ENV} must be a whole number of pairs, got {raw!r}.") from None
    return kw


def process_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """This process's bf16 use, caches, hub access, threads, world size, log level, key and recorded environment."""
    raw = env.get("WORLD_SIZE", "1").strip() or "1"
    try:
        world = int(raw)
    except ValueError:
        raise UserError(f"$WORLD_SIZE must be a whole number of processes, got {raw!r}.") from None
    return {"cpu_bf16": env.get(CPU_BF16_ENV, "").strip() not in ("0", "false", "no"),
            "cache_dir": Path(env.get(CACHE_ENV) or default_cache()),
            "gguf_cache": not env.get(NO_GGUF_CACHE_ENV),
            "hub_offline": any(env.get(v, "").lower() in ("1", "true", "yes") for v in OFFLINE_ENVS),
            "threads_pinned": bool(env.get("OMP_NUM_THREADS")),
            "world_size": world,
            "log_level": env.get(LOG_ENV) or None,
            "api_key": env.get(API_KEY_ENV) or None,
            "recorded_env": recorded_env(env)}


def log_level(environ: Mapping[str, str] | None = None) -> str:
    """The CLI's log level: $RELDISTILL_LOG, else WARNING (read alone: a bad setting elsewhere must not stop logging)."""
    return (os.environ if environ is None else environ).get(LOG_ENV) or "WARNING"


def pin_threads(threads: int) -> None:
    """Set $OMP_NUM_THREADS (unless the user set it) before torch loads: the one environment write, at the CLI edge."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
