"""The results of `reldistill bench` as people read them: the headline figures under stable names (baseline and new
path side by side, with same-run ratios), one markdown table of every figure, and bench.json / bench.md written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reldistill.artifacts import write_json, write_text


def figures(res: dict[str, Any]) -> dict[str, Any]:
    """The headline figures under stable names: baseline (torch / fp32) and new path side by side, with ratios."""
    m, s, q, srch, t = res["machine"], res["student"], res["query_encode"], res["search"], res["teacher"]
    used = "bfloat16" if "bfloat16" in t["dtypes"] else "float32"  # what teacher dtype auto picks on this CPU
    hyb, hyb0 = srch["hybrid"]["total_ms"], srch.get("hybrid-torch", {}).get("total_ms")
    rr, rr0 = (srch.get(k, {}).get("total_ms", {}).get("p50_ms") for k in ("rerank@20", "rerank@20-full-forward"))
    out = {
        "cpu": m["cpu"], "cpu_flags": m["cpu_flags"], "load_avg_1m": m.get("load_avg_1m"),
        "student_backend": s["backend"], "student_precision": s["precision"],
        "query_encode_p50_ms_torch": q["torch"]["p50_ms"], "query_encode_p50_ms_new": q["new"]["p50_ms"],
        "query_encode_speedup": q["torch"]["p50_ms"] / q["new"]["p50_ms"],
        "query_encode_p99_ms_torch": q["torch"]["p99_ms"], "query_encode_p99_ms_new": q["new"]["p99_ms"],
        "query_encode_backend": q["new"]["runtime"],
        "query_encode_int8": q["new"]["runtime"].endswith("-int8"),
        "query_encode_int8_dev_drop": (q["new"].get("int8_gate") or {}).get("drop"),
        "query_encode_steps_ms_new": q["new"]["steps_ms"],
        "hybrid_p50_ms_new": hyb["p50_ms"], "hybrid_p99_ms_new": hyb["p99_ms"],
        "hybrid_p50_ms_torch": hyb0["p50_ms"] if hyb0 else None, "hybrid_p99_ms_torch": hyb0["p99_ms"] if hyb0 else None,
        "hybrid_p50_speedup": hyb0["p50_ms"] / hyb["p50_ms"] if hyb0 else None,
        "catalog_encode_docs_per_s_torch": s["plain_docs_per_s"], "catalog_encode_docs_per_s_new": s["reldistill_docs_per_s"],
        "catalog_encode_speedup": s["ratio_vs_plain"],
        "teacher_dtype": used, "teacher_pairs_per_s": t["dtypes"][used]["pairs_per_s"],
        "teacher_peak_fraction": t["dtypes"][used]["peak_fraction"],
        "teacher_fp32_pairs_per_s": t["dtypes"]["float32"]["pairs_per_s"],
        "teacher_speedup_vs_fp32": t["dtypes"][used]["pairs_per_s"] / t["dtypes"]["float32"]["pairs_per_s"],
        "teacher_fp32_prefix_kv_pairs_per_s": t["prefix_kv"]["prefix_pairs_per_s"],
        "teacher_fp32_full_pairs_per_s": t["prefix_kv"]["full_pairs_per_s"],
        "teacher_prefix_kv_speedup_vs_fp32": t["prefix_kv"]["speedup"],
        "teacher_prefix_kv_spearman_vs_fp32": t["prefix_kv"]["spearman"],
        "teacher_prefix_kv_tokens_run_fraction": t["prefix_kv"]["tokens_run"] / t["prefix_kv"]["tokens"],
        "teacher_int8_pairs_per_s": t["int8"]["int8_pairs_per_s"], "teacher_int8_speedup_vs_fp32": t["int8"]["speedup"],
        "teacher_int8_spearman_vs_fp32": t["int8"]["spearman"], "teacher_int8_kept": t["int8"]["kept"],
        "rerank_top20_p50_ms": rr, "rerank_top20_p50_ms_full_forward": rr0,
        "rerank_prefix_kv_speedup": rr0 / rr if rr and rr0 else None,
        "matmul_peak_gflops": {dt: mm["gflops"] for dt, mm in res["matmul"].items()},
        "skipped": res.get("skipped", {}),
    }
    return out


def _f(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


Row = tuple[str, str, str, str]


def render(res: dict[str, Any]) -> str:
    """One markdown table (benchmark | setting | measured | relative) under a machine description."""
    rows = [*_matmul_rows(res), *_teacher_rows(res["teacher"]), *_student_rows(res), *_index_rows(res["index"]),
            *_search_rows(res), *_gpu_rows(res.get("gpu"))]
    table = ["| benchmark | setting | measured | relative |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(_head(res["machine"]) + table + _notes(res)) + "\n"


def _head(m: dict[str, Any]) -> list[str]:
    """The machine line above the table."""
    load = f", 1-min load average {m['load_avg_1m']} at start" if "load_avg_1m" in m else ""
    return [f"# reldistill bench — {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
            f"{m['memory_gib']} GiB RAM, CPU flags: {', '.join(m['cpu_flags']) or 'none of AVX2/AVX-512/AMX'}{load}; "
            f"torch {m['torch']}, Python {m['python']}; GPU: {m['gpu'] or 'none'}", ""]


def _matmul_rows(res: dict[str, Any]) -> list[Row]:
    """The measured matmul peak of each dtype (the reference of every % of peak), and the dtypes skipped."""
    rows = [("matmul peak", f"{dt}, {mm['n']}² @ {mm['n']}²", f"{_f(mm['gflops'])} GFLOP/s", "= 100% (reference)")
            for dt, mm in res["matmul"].items()]
    rows += [(f"matmul peak / teacher scoring ({dt})", "-", why, "-") for dt, why in res.get("skipped", {}).items()]
    return rows


def _teacher_rows(t: dict[str, Any]) -> list[Row]:
    """Teacher scoring per dtype, with the shared-prefix and int8 paths against fp32 re-timed beside them."""
    rows = []
    for dt, d in t["dtypes"].items():
        rel = f"{d['peak_fraction']:.1%} of {dt} peak"
        if dt == "bfloat16":
            rel += f"; {t['bf16_speedup']:.2f}× fp32"
        rows.append((f"teacher scoring ({dt})", f"{t['pairs']} ESCI pairs, {t['tokens']:,} tokens, batch {t['batch_size']}",
                     f"{_f(d['pairs_per_s'])} pairs/s · {_f(d['tokens_per_s'], 0)} tok/s · {_f(d['gflops'])} GFLOP/s", rel))
    pk = t["prefix_kv"]
    rows.append(("teacher scoring (float32, shared prefix once)", f"same pairs; the template's {pk['shared_prefix_tokens']} tokens, and each query with ≥ {pk['min_group']} pairs, run once ({pk['parts']} parts): "
                 f"{pk['tokens_run']:,} of {pk['tokens']:,} tokens run; full forward re-timed beside it",
                 f"{_f(pk['prefix_pairs_per_s'])} pairs/s vs full {_f(pk['full_pairs_per_s'])}",
                 f"{pk['speedup']:.2f}× fp32; Spearman {pk['spearman']:.4f}, max |Δlogit| {pk['max_abs_logit_diff']:.1e} (exact up to fp32 rounding)"))
    q8 = t["int8"]
    rows.append(("teacher scoring (int8 dynamic, linear layers)", "same pairs, fp32 re-timed beside it",
                 f"{_f(q8['int8_pairs_per_s'])} pairs/s vs fp32 {_f(q8['float32_pairs_per_s'])}",
                 f"{q8['speedup']:.2f}× fp32; Spearman {q8['spearman']:.4f} to fp32 ({'kept' if q8['kept'] else 'not kept'}: needs ≥ 0.99 and faster)"))
    return rows


def _student_rows(res: dict[str, Any]) -> list[Row]:
    """Catalog encode against plain sentence-transformers, and the one-query encode against torch."""
    s = res["student"]
    rows = [("student encode (plain ST)", f"{s['docs']:,} catalog texts, batch {s['batch_size']}, torch fp32", f"{_f(s['plain_docs_per_s'])} docs/s", "baseline"),
            ("student encode (reldistill)", f"same texts, encode_documents ({s['backend']}, {s['precision']}; min cosine {s['min_cosine_vs_plain']:.5f})", f"{_f(s['reldistill_docs_per_s'])} docs/s", f"{s['ratio_vs_plain']:.2f}× plain")]
    q = res["query_encode"]
    rows.append(("query encode (torch)", f"{q['torch']['n']} queries, one at a time", f"p50 {q['torch']['p50_ms']:.2f} ms · p99 {q['torch']['p99_ms']:.2f} ms", "baseline"))
    steps = ", ".join(f"{k[:-3]} {v:.2f}" for k, v in q["new"]["steps_ms"].items() if k != "total_ms")
    gate = q["new"].get("int8_gate")
    how = "same queries, in turns of 50 with the baseline (2 untimed first)"
    if gate:
        how += (f"; int8 queries, dev nDCG@10 {gate['dev_ndcg10_int8']:.4f} vs fp32 {gate['dev_ndcg10_fp32']:.4f} "
                f"(drop {gate['drop']:.4f} < {gate['max_drop']})")
    rows.append((f"query encode ({q['new']['runtime']}, one-query path)", how,
                 f"p50 {q['new']['p50_ms']:.2f} ms · p99 {q['new']['p99_ms']:.2f} ms",
                 f"{q['torch']['p50_ms'] / q['new']['p50_ms']:.2f}× faster p50 (median steps ms: {steps})"))
    return rows


def _index_rows(ix: dict[str, Any]) -> list[Row]:
    """Index build time and memory of each part."""
    rows = []
    for key, label in (("encode", "encode catalog"), ("faiss_flat", "FAISS flat"), ("faiss_hnsw", "FAISS HNSW"), ("bm25", "BM25 (bm25s)")):
        st = ix[key]
        mem = f"peak {_f(st['traced_peak_mib'])} MiB traced"
        if "rss_growth_mib" in st:
            mem += f", RSS {st['rss_growth_mib']:+,.1f} MiB"
        rows.append((f"index build: {label}", f"{ix['products']:,} products", f"{st['seconds']:.2f} s", mem))
    return rows


def _search_rows(res: dict[str, Any]) -> list[Row]:
    """Search latency per mode, as ratios against dense-flat, hybrid-torch and the full-forward rerank."""
    search = res["search"]
    ref = search.get("dense-flat", {}).get("total_ms", {}).get("p50_ms")
    base = search.get("hybrid-torch", {}).get("total_ms", {}).get("p50_ms")
    rows = []
    for mode, stages in search.items():
        tot = stages["total_ms"]
        parts = ", ".join(f"{k[:-3]} {v['p50_ms']:.1f}" for k, v in stages.items() if k != "total_ms")
        rel = f"{tot['p50_ms'] / ref:.2f}× dense-flat p50" if ref else ""
        if mode == "hybrid" and base:
            rel = f"{base / tot['p50_ms']:.2f}× faster p50 than hybrid-torch; " + rel
        full = search.get(f"{mode}-full-forward", {}).get("total_ms", {}).get("p50_ms")
        if full:  # rerank with the shared prefixes against the same rerank on the full forward, same queries
            rel = f"{full / tot['p50_ms']:.2f}× faster p50 than {mode}-full-forward; " + rel
        rows.append((f"search latency: {mode}", f"{tot['n']} queries, {res['search_index_products']:,} products, k=10",
                     f"p50 {tot['p50_ms']:.1f} ms · p99 {tot['p99_ms']:.1f} ms", f"{rel} (p50 stages ms: {parts})"))
    return rows


def _gpu_rows(g: dict[str, Any] | None) -> list[Row]:
    """GPU teacher scoring and training on the production shape, where CUDA ran."""
    if not g:
        return []
    return [(f"GPU teacher {kind} (bf16)", f"{g['gpu']}, Llama-3.2-1B shape, batch {g['batch']}×{g['seq_len']}",
             f"{_f(g[kind]['tokens_per_s'], 0)} tok/s · {_f(g[kind]['tflops'], 1)} TFLOP/s",
             f"MFU {g[kind]['mfu']:.1%} of measured {_f(g['bf16_matmul_peak_tflops'])} TFLOP/s")
            for kind in ("scoring", "training")]


def _notes(res: dict[str, Any]) -> list[str]:
    """The lines under the table: models, FLOP convention, GPU memory, backend, total time."""
    t, s, g = res["teacher"], res["student"], res.get("gpu")
    return ["", f"Teacher: {t['model']} ({t['matmul_params']:,} matmul parameters; FLOPs = 2 × params × tokens, "
            f"attention scores excluded); load {t['load_s']:.1f} s. Student: {s['model']}.",
            "GPU teacher: not run (no CUDA device on this machine)." if not g else
            f"GPU peak memory {g['peak_memory_gib']:.1f} GiB; LoRA trainable params {g['lora_trainable_params']:,}.",
            f"Student backend: {s['backend']} (hybrid-torch and the baselines run the same student through PyTorch). "
            "Timings on a shared machine are inflated by its load; compare the ratios, taken in the same run.",
            f"Total bench time {res['total_s']:.0f} s."]


def write_bench(directory: Path, res: dict[str, Any]) -> None:
    """``bench.json`` and ``bench.md`` into ``directory`` (atomic)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "bench.json", {k: v for k, v in res.items() if k != "markdown"})
    write_text(directory / "bench.md", res["markdown"])
