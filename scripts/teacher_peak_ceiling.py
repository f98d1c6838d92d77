"""Where a teacher's scoring time goes, against the matmul peak: the ceiling on its "% of peak".

Scores the bench's pairs (the first ``--pairs`` test pairs) with the full forward in ``--dtype`` under the
PyTorch profiler and prints one JSON line each for:
- ``overall``: pairs/s and GFLOP/s (2 × matmul params × tokens, as ``reldistill bench`` counts) as % of the
  n×n matmul peak measured in the same run;
- ``time_share``: the share of operator time in the matmuls and in the other top operators;
- ``ceiling``: the % of peak if every non-matmul operator cost nothing (overall ÷ matmul share);
- ``linear_shapes``: GFLOP/s of each of the backbone's Linear shapes alone at the batch's row count.

    python scripts/teacher_peak_ceiling.py runs/demo/teacher --dtype bfloat16
    python scripts/teacher_peak_ceiling.py llama-3.2-1b --dtype bfloat16   # the production teacher's shape

``llama-3.2-1b`` times the production recipe's backbone architecture (Llama-3.2-1B's config, random weights:
speed does not depend on the values; no download) on rows of ``--tokens-per-pair`` tokens (default 85: the
bench pairs' mean under the demo teacher's tokenizer).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_mm")
LLAMA_3_2_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072,
                "rope_theta": 500000.0, "tie_word_embeddings": True}


class _RandomLlama:
    """The scoring forward of a random-weight Llama-3.2-1B backbone on (batch, ``length``) token rows."""

    def __init__(self, dtype: torch.dtype, length: int):
        from transformers import LlamaConfig, LlamaModel

        self.backbone = LlamaModel(LlamaConfig(**LLAMA_3_2_1B)).to(dtype).eval()
        self.length = length

    @torch.inference_mode()
    def score(self, n: int, batch_size: int) -> None:
        for start in range(0, n, batch_size):
            ids = torch.randint(0, LLAMA_3_2_1B["vocab_size"] - 1, (min(batch_size, n - start), self.length))
            self.backbone(input_ids=ids, attention_mask=torch.ones_like(ids))


def _linear_rate(rows: int, k: int, n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    a, w = torch.randn(rows, k).to(dtype), torch.randn(n, k).to(dtype)
    torch.nn.functional.linear(a, w)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(a, w)
    return 2 * rows * k * n * repeats / (time.perf_counter() - t0) / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", help="teacher artifact folder, or llama-3.2-1b (random weights, the production shape)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--pairs", type=int, default=64, help="first test pairs (the bench's)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens-per-pair", type=int, default=85, help="llama-3.2-1b only: tokens per row")
    ap.add_argument("--data", default="../shared/data/esci-sample")
    a = ap.parse_args(argv)

    from torch.profiler import ProfilerActivity, profile

    from reldistill.config import DataConfig
    from reldistill.data.esci import load_esci
    from reldistill.bench.compute import machine, matmul_params, matmul_peak
    from reldistill.teacher.backbone import set_cpu_threads
    from reldistill.settings import Runtime
    from reldistill.teacher.teacher import Teacher

    runtime = Runtime.from_env(teacher_prefix_kv=False)  # every token computed, as the bench's peak fraction counts
    threads = set_cpu_threads("auto", runtime)
    data = load_esci(DataConfig(path=a.data))
    pairs = data.split("test").head(a.pairs)
    q, x = pairs["query"].astype(str).tolist(), pairs["text"].astype(str).tolist()
    dt = getattr(torch, a.dtype)
    if a.teacher == "llama-3.2-1b":
        llama = _RandomLlama(dt, a.tokens_per_pair)
        backbone, tokens = llama.backbone, a.tokens_per_pair * len(q)

        def run() -> None:
            llama.score(len(q), a.batch_size)
    else:
        t = Teacher.load(a.teacher, dtype=a.dtype, int8="off", runtime=runtime)
        backbone, tokens = t.model.backbone, sum(map(len, t.encoder.encode(q, x)))

        def run() -> None:
            t.score_logits(q, x, batch_size=a.batch_size, memo=False, prior=False)
    peak = matmul_peak(2048, a.dtype, 3)["gflops"]
    params = matmul_params(backbone)
    run()  # warm-up
    t0 = time.perf_counter()
    run()
    secs = time.perf_counter() - t0
    gflops = 2 * params * tokens / secs / 1e9
    print(json.dumps({"overall": {"cpu": machine().get("cpu"), "model": a.teacher, "threads": threads, "dtype": a.dtype, "pairs": len(q),
                                  "tokens": tokens, "pairs_per_s": round(len(q) / secs, 2), "gflops": round(gflops, 1),
                                  "peak_gflops": round(peak, 1), "peak_fraction": round(gflops / peak, 4),
                                  "load_avg_1m": round(os.getloadavg()[0], 2)}}), flush=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    ops = {k.key: k.self_cpu_time_total for k in prof.key_averages()}
    total = sum(ops.values())
    mm = sum(v for k, v in ops.items() if k in MATMUL_OPS) / total
    top = {k: round(v / total, 4) for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:10]}
    print(json.dumps({"time_share": {"matmul": round(mm, 4), "top_ops": top}}), flush=True)
    print(json.dumps({"ceiling": {"peak_fraction_if_only_matmuls_took_time": round(gflops / peak / mm, 4),
                                  "matmul_gflops_while_running": round(gflops / mm, 1)}}), flush=True)
    rows = a.batch_size * round(tokens / len(q))
    shapes = sorted({(m.in_features, m.out_features) for m in backbone.modules() if isinstance(m, torch.nn.Linear)})
    print(json.dumps({"linear_shapes": {"rows": rows, "gflops": {f"{k}->{n}": round(_linear_rate(rows, k, n, dt), 1)
                                                                 for k, n in shapes}}}), flush=True)


if __name__ == "__main__":
    main()
