"""Compute benchmarks: the machine, its measured matmul peak, and teacher scoring throughput per dtype.

Model FLOPs are counted as 2 × N × tokens, N = the backbone's parameters without the input
embedding table (a lookup, not a matmul); attention-score FLOPs are left out (pairs are ~60 tokens).
The achieved fraction of peak divides that by a square matmul measured in the same run and dtype.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from reldistill.bench.teacher_dtypes import prefix_check
from reldistill.precision import cpu_has_bf16, cpu_info
from reldistill.recipe.teacher import TeacherConfig
from reldistill.teacher.int8 import int8_check


def machine() -> dict[str, Any]:
    """CPU model and its speed flags (AVX2, AVX-512, AVX512-BF16, AMX), cores, threads, memory, versions, GPU."""
    import torch

    info = cpu_info()
    mem = None
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    out = {
        "cpu": info["model"], "cpu_flags": info["flags"], "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "memory_gib": mem, "python": platform.python_version(), "torch": torch.__version__, "system": platform.system(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)  # other jobs sharing the cores skew every figure
    except OSError:
        pass
    return out


def cpu_dtypes(runtime=None) -> tuple[list[str], dict[str, str]]:
    """The dtypes this CPU runs natively (fp32 always; bf16 with AVX512-BF16 or AMX, unless ``runtime`` says not to)
    and why others are skipped."""
    if cpu_has_bf16(runtime):
        return ["float32", "bfloat16"], {}
    return ["float32"], {"bfloat16": "skipped: this CPU has no AVX512-BF16 or AMX, so bf16 would only be emulated"}


def matmul_peak(n: int = 2048, dtype: str = "float32", repeats: int = 3, device: str = "cpu") -> dict[str, float]:
    """Best-of-``repeats`` GFLOP/s of an n×n @ n×n matmul (2·n³ FLOPs) in ``dtype`` on ``device``."""
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(n, n, device=device).to(dt)
    b = torch.randn(n, n, device=device).to(dt)
    torch.mm(a, b)  # warm-up (kernel selection, page-in)
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "seconds": best, "gflops": 2 * n**3 / best / 1e9}


def matmul_params(backbone) -> int:
    """Parameters that take part in matmuls: all backbone parameters minus the input embedding table."""
    total = sum(p.numel() for p in backbone.parameters())
    emb = backbone.get_input_embeddings()
    return int(total - (emb.weight.numel() if emb is not None else 0))


def _teacher_for_bench(teacher_dir: Path | None, base: str, runtime=None):
    """A Teacher in fp32: the run's trained teacher, else an untrained one on ``base`` (same compute)."""
    import torch

    from reldistill.teacher.teacher import Teacher, build_cross_encoder

    if teacher_dir is not None:
        return Teacher.load(teacher_dir, dtype="float32", device="cpu", int8="off", runtime=runtime), str(teacher_dir)
    cfg = TeacherConfig(model=base)
    model, tok, _ = build_cross_encoder(cfg, torch.float32, runtime=runtime)
    if cfg.lora_r > 0:  # Teacher.load merges LoRA into the weights; do the same so the compute matches
        model.backbone = model.backbone.merge_and_unload()
    return Teacher(model, tok, cfg, runtime=runtime), f"{base} (untrained head, LoRA merged)"


def teacher_throughput(queries: list[str], texts: list[str], base: str, teacher_dir: Path | None,
                       batch_size: int, peaks: dict[str, float], runtime=None) -> dict[str, Any]:
    """pairs/s, tokens/s, GFLOP/s and fraction of the measured matmul peak per dtype in ``peaks``, same pairs."""
    import torch

    t0 = time.perf_counter()
    teacher, what = _teacher_for_bench(teacher_dir, base, runtime)
    load_s = time.perf_counter() - t0
    n_params = matmul_params(teacher.model.backbone)
    tokens = int(sum(len(r) for r in teacher.encoder.encode(queries, texts)))
    out: dict[str, Any] = {"model": what, "load_s": load_s, "pairs": len(queries), "tokens": tokens,
                           "matmul_params": n_params, "batch_size": batch_size, "dtypes": {}}
    from reldistill.teacher.teacher import running_with

    for dtype in peaks:
        teacher.model.backbone.to(getattr(torch, dtype))  # the head stays fp32, as Teacher.load keeps it
        # the full forward: every token computed, so the peak fraction is real compute
        with running_with(teacher, teacher_prefix_kv=False):
            teacher.score_pairs(queries[:batch_size], texts[:batch_size], batch_size=batch_size, memo=False)  # warm-up
            t = time.perf_counter()
            scores = teacher.score_pairs(queries, texts, batch_size=batch_size, memo=False)
            sec = time.perf_counter() - t
        gflops = 2 * n_params * tokens / sec / 1e9
        out["dtypes"][dtype] = {"seconds": sec, "pairs_per_s": len(queries) / sec, "tokens_per_s": tokens / sec,
                                "gflops": gflops, "peak_fraction": gflops / peaks[dtype],
                                "mean_score": float(np.mean(scores))}
    teacher.model.backbone.to(torch.float32)
    out["prefix_kv"] = prefix_check(teacher, queries, texts, batch_size)  # fp32, exact: the shared template prefix once
    out["int8"] = int8_check(teacher, queries, texts, batch_size)  # what a CPU without bf16 can use instead
    if "bfloat16" in out["dtypes"]:
        out["bf16_speedup"] = out["dtypes"]["bfloat16"]["pairs_per_s"] / out["dtypes"]["float32"]["pairs_per_s"]
    return out
