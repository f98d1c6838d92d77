"""Selective int8 on a teacher: which Linear layers can take PyTorch dynamic int8 and keep its ranking?

Scores the int8 gate's dev Task-1 pairs (reldistill.teacher.int8.gate_pairs: the data the teacher was
trained on) in fp32 once, then, per setting, with the chosen Linear layers of the backbone quantised
(per-tensor or per-channel weights) and fp32 re-timed beside it; prints one JSON line per setting:
layers quantised, pairs/s of both, speed-up and Spearman to fp32 (the gate needs ≥ 0.99).

    RELDISTILL_CPU_BF16=0 python scripts/teacher_int8_settings.py runs/demo/teacher --pairs 32
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from scipy.stats import spearmanr

from reldistill.settings import Runtime


def _layer(name: str) -> int:
    return int(name.split("layers.")[1].split(".")[0]) if "layers." in name else -1


def settings(n_layers: int) -> dict:
    """Setting name → which Linear (by module name) it quantises."""
    def has(*parts):
        return lambda n: any(p in n for p in parts)

    return {
        "all": lambda n: True,
        "no_down": lambda n: "down_proj" not in n,
        "attn_qkv": has("q_proj", "k_proj", "v_proj"),
        "o_only": has("o_proj"),
        "gate_up": has("gate_proj", "up_proj"),
        "down_only": has("down_proj"),
        "qkv_gate_up": has("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"),
        "gate_up_last_third": lambda n: _layer(n) >= 2 * n_layers // 3 and has("gate_proj", "up_proj")(n),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", help="teacher artifact folder")
    ap.add_argument("--pairs", type=int, default=32, help="first dev Task-1 pairs scored per setting")
    ap.add_argument("--only", help="comma-separated setting names (default: all)")
    ap.add_argument("--per-channel", action="store_true", help="also each setting with per-channel weight scales")
    a = ap.parse_args(argv)

    from reldistill.teacher import int8 as q8
    from reldistill.teacher.backbone import set_cpu_threads
    from reldistill.teacher.teacher import Teacher

    set_cpu_threads("auto", runtime=Runtime.from_env())
    t = Teacher.load(a.teacher, dtype="float32", int8="off", runtime=Runtime.from_env())
    df = q8.gate_pairs(q8._trained_on(t))
    q, x = df["query"].astype(str).tolist()[: a.pairs], df["text"].astype(str).tolist()[: a.pairs]
    dense = t.model.backbone
    linear = [n for n, m in dense.named_modules() if isinstance(m, torch.nn.Linear)]
    chosen = settings(max(_layer(n) for n in linear) + 1)
    names = a.only.split(",") if a.only else list(chosen)
    qconfigs = [("", torch.ao.quantization.default_dynamic_qconfig)]
    if a.per_channel:
        qconfigs.append(("+per-channel", torch.ao.quantization.per_channel_dynamic_qconfig))

    def timed():
        t.score_logits(q[:4], x[:4], memo=False)
        t0 = time.perf_counter()
        out = t.score_logits(q, x, memo=False)
        return out, len(q) / (time.perf_counter() - t0)

    ref, _ = timed()
    for name in names:
        for suffix, qc in qconfigs:
            spec = {n: qc for n in linear if chosen[name](n)}
            quant = torch.ao.quantization.quantize_dynamic(dense, spec, dtype=torch.qint8, inplace=False)
            t.model.backbone, t.int8 = quant, True
            out, rate = timed()
            t.model.backbone, t.int8 = dense, False
            _, fp32_rate = timed()
            print(json.dumps({"setting": name + suffix, "quantised": len(spec), "of": len(linear),
                              "pairs": len(q), "int8_pairs_per_s": round(rate, 2), "fp32_pairs_per_s": round(fp32_rate, 2),
                              "speedup": round(rate / fp32_rate, 3), "spearman": round(float(spearmanr(ref, out).statistic), 4),
                              "load_avg_1m": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
