"""Where a teacher's scoring time goes, against the matmul peak: the ceiling on its "% of peak".

Scores the bench's pairs (the first ``--pairs`` test pairs) with the full forward in ``--dtype`` under the
PyTorch profiler and prints one JSON line each for:
- ``overall``: pairs/s and GFLOP/s (2 × matmul params × tokens, as ``reldistill bench`` counts) as % of the
  n×n matmul peak measured in the same run;
- ``time_share``: the share of operator time in the matmuls and in the other top operators;
- ``ceiling``: the % of peak if every non-matmul operator cost nothing (overall ÷ matmul share);
- ``linear_shapes``: GFLOP/s of each of the backbone's Linear shapes alone at the batch's row count.

    python scripts/teacher_peak_ceiling.py runs/demo/teacher --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_mm")


def _linear_rate(rows: int, k: int, n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    a, w = torch.randn(rows, k).to(dtype), torch.randn(n, k).to(dtype)
    torch.nn.functional.linear(a, w)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(a, w)
    return 2 * rows * k * n * repeats / (time.perf_counter() - t0) / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", help="teacher artifact folder")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--pairs", type=int, default=64, help="first test pairs (the bench's)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--data", default="../shared/data/esci-sample")
    a = ap.parse_args(argv)

    from torch.profiler import ProfilerActivity, profile

    from reldistill.config import DataConfig
    from reldistill.data.esci import load_esci
    from reldistill.eval.bench_compute import machine, matmul_params, matmul_peak
    from reldistill.teacher.backbone import set_cpu_threads
    from reldistill.teacher.prefix_kv import PREFIX_KV_ENV
    from reldistill.teacher.teacher import Teacher

    threads = set_cpu_threads("auto")
    data = load_esci(DataConfig(path=a.data))
    pairs = data.split("test").head(a.pairs)
    q, x = pairs["query"].astype(str).tolist(), pairs["text"].astype(str).tolist()
    t = Teacher.load(a.teacher, dtype=a.dtype, int8="off")
    os.environ[PREFIX_KV_ENV] = "0"  # every token computed, as the bench's peak fraction counts
    dt = getattr(torch, a.dtype)
    peak = matmul_peak(2048, a.dtype, 3)["gflops"]
    ids = t.encoder.encode(q, x)
    tokens, params = sum(map(len, ids)), matmul_params(t.model.backbone)
    t.score_logits(q[: a.batch_size], x[: a.batch_size], batch_size=a.batch_size, memo=False, prior=False)  # warm-up
    t0 = time.perf_counter()
    t.score_logits(q, x, batch_size=a.batch_size, memo=False, prior=False)
    secs = time.perf_counter() - t0
    gflops = 2 * params * tokens / secs / 1e9
    print(json.dumps({"overall": {"cpu": machine().get("cpu"), "threads": threads, "dtype": a.dtype, "pairs": len(q),
                                  "tokens": tokens, "pairs_per_s": round(len(q) / secs, 2), "gflops": round(gflops, 1),
                                  "peak_gflops": round(peak, 1), "peak_fraction": round(gflops / peak, 4),
                                  "load_avg_1m": round(os.getloadavg()[0], 2)}}), flush=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t.score_logits(q, x, batch_size=a.batch_size, memo=False, prior=False)
    ops = {k.key: k.self_cpu_time_total for k in prof.key_averages()}
    total = sum(ops.values())
    mm = sum(v for k, v in ops.items() if k in MATMUL_OPS) / total
    top = {k: round(v / total, 4) for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:10]}
    print(json.dumps({"time_share": {"matmul": round(mm, 4), "top_ops": top}}), flush=True)
    print(json.dumps({"ceiling": {"peak_fraction_if_only_matmuls_took_time": round(gflops / peak / mm, 4),
                                  "matmul_gflops_while_running": round(gflops / mm, 1)}}), flush=True)
    rows = a.batch_size * round(tokens / len(q))
    shapes = sorted({(m.in_features, m.out_features) for m in t.model.backbone.modules() if isinstance(m, torch.nn.Linear)})
    print(json.dumps({"linear_shapes": {"rows": rows, "gflops": {f"{k}->{n}": round(_linear_rate(rows, k, n, dt), 1)
                                                                 for k, n in shapes}}}), flush=True)


if __name__ == "__main__":
    main()
