"""`reldistill bench`: every speed figure measured in one run on this machine, rendered as one markdown table.

Sections: matmul peak per dtype this CPU runs natively (fp32; bf16 only with AVX512-BF16 / AMX — a
dtype the hardware lacks is skipped and the output says so) → teacher scoring per dtype (pairs/s,
tokens/s, fraction of that dtype's measured peak) → student catalog encoding and one-query encoding
(today's PyTorch path vs the student backend in use) → index build (time, memory) → search latency
per mode, hybrid on both student paths → GPU teacher (only where CUDA is available). Every speed
figure is also given as a ratio against a baseline measured in the same run; ``figures`` in the JSON
holds the headline numbers under stable names.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from reldistill.artifacts import write_json, write_text
from reldistill.config import DataConfig
from reldistill.progress import console
from reldistill.recipe.eval import BenchConfig
from reldistill.run_layout import RunDir

log = logging.getLogger(__name__)


def _step(name: str):
    return console.status(f"[bold]bench[/]: {name}")


def run_bench(cfg: BenchConfig, data_cfg: DataConfig, run: Path | None = None, *, runtime=None) -> dict[str, Any]:
    """Run every benchmark and return the results with a ``markdown`` rendering (``runtime``: a
    ``reldistill.settings.Runtime``, how the models run; recorded in the provenance)."""
    import torch

    from reldistill.data import load_esci
    from reldistill.bench.compute import cpu_dtypes, machine, matmul_peak, teacher_throughput
    from reldistill.bench.search import build_indexes, query_encoding, search_latency, student_encoding
    from reldistill.student import load_student

    t_all = time.perf_counter()
    from reldistill.provenance import provenance

    res: dict[str, Any] = {"machine": machine(), "config": dict(cfg.__dict__), "provenance": provenance(runtime=runtime)}
    dtypes, res["skipped"] = cpu_dtypes(runtime)
    with _step(f"matmul peak ({', '.join(dtypes)})"):
        res["matmul"] = {dt: matmul_peak(cfg.matmul_n, dt, cfg.repeats) for dt in dtypes}
    peaks = {dt: m["gflops"] for dt, m in res["matmul"].items()}
    data = load_esci(data_cfg)
    pairs = data.split("test") if len(data.split("test")) else data.examples
    pairs = pairs.head(cfg.teacher_pairs)
    rd = RunDir(run, check=False) if run is not None else None
    teacher_dir = rd.teacher if rd is not None and rd.done("teacher") else None
    with _step(f"teacher scoring, {len(pairs)} pairs × {'/'.join(dtypes)}"):
        res["teacher"] = teacher_throughput(pairs["query"].tolist(), pairs["text"].tolist(), cfg.teacher, teacher_dir,
                                            cfg.teacher_batch, peaks, runtime)
    student_name = str(rd.student) if rd is not None and rd.done("student") else cfg.student
    baseline = load_student(student_name, backend="torch", runtime=runtime)  # today's path: PyTorch
    with _step("student backend (auto measures once per CPU and student)"):
        model = load_student(student_name, runtime=runtime)  # the backend student.backend / $RELDISTILL_STUDENT_BACKEND picks
    products = data.products if cfg.index_docs is None else data.products.head(cfg.index_docs)
    with _step(f"student encoding, {min(cfg.student_docs, len(data.products))} docs × 2 paths"):
        res["student"] = {"model": student_name, **student_encoding(baseline, model, data.products["text"].head(cfg.student_docs).tolist())}
    with _step(f"index build, {len(products):,} products"):
        built, res["index"] = build_indexes(model, products, data.examples)
    queries = list(dict.fromkeys(list(data.split("test")["query"]) + list(data.examples["query"])))[: cfg.search_queries]
    with _step(f"query encoding, {len(queries)} queries one at a time × 2 paths"):
        from reldistill.student.query_encoder import QueryEncoder, query_encoder

        # baseline: sentence-transformers' encode on PyTorch; new: the query encoder search/serve/eval use
        res["query_encode"] = query_encoding({"torch": QueryEncoder(baseline, "plain"), "new": query_encoder(model)}, queries)
    reranker = None
    if teacher_dir is not None:
        from reldistill.teacher.rerank import TeacherReranker

        reranker = TeacherReranker.load(teacher_dir, runtime=runtime)
    with _step(f"search latency, {len(queries)} queries per mode"):
        res["search"] = search_latency(built, model, queries, reranker, baseline=baseline)
    res["search_index_products"] = len(products)
    if torch.cuda.is_available():
        from reldistill.bench.gpu import gpu_teacher_bench

        with _step("GPU teacher (Llama-3.2-1B shape, random weights)"):
            res["gpu"] = gpu_teacher_bench(cfg.gpu_model_config, cfg.gpu_seq_len, cfg.gpu_batch)
    else:
        res["gpu"] = None
    res["total_s"] = time.perf_counter() - t_all
    res["figures"] = figures(res)
    res["markdown"] = render(res)
    return res


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


def render(res: dict[str, Any]) -> str:
    """One markdown table (benchmark | setting | measured | relative) under a machine description."""
    m = res["machine"]
    load = f", 1-min load average {m['load_avg_1m']} at start" if "load_avg_1m" in m else ""
    head = [f"# reldistill bench — {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
            f"{m['memory_gib']} GiB RAM, CPU flags: {', '.join(m['cpu_flags']) or 'none of AVX2/AVX-512/AMX'}{load}; "
            f"torch {m['torch']}, Python {m['python']}; GPU: {m['gpu'] or 'none'}", ""]
    rows: list[tuple[str, str, str, str]] = []
    for dt, mm in res["matmul"].items():
        rows.append(("matmul peak", f"{dt}, {mm['n']}² @ {mm['n']}²", f"{_f(mm['gflops'])} GFLOP/s", "= 100% (reference)"))
    t = res["teacher"]
    for dt, why in res.get("skipped", {}).items():
        rows.append((f"matmul peak / teacher scoring ({dt})", "-", why, "-"))
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
    s = res["student"]
    rows.append(("student encode (plain ST)", f"{s['docs']:,} catalog texts, batch {s['batch_size']}, torch fp32", f"{_f(s['plain_docs_per_s'])} docs/s", "baseline"))
    rows.append(("student encode (reldistill)", f"same texts, encode_documents ({s['backend']}, {s['precision']}; min cosine {s['min_cosine_vs_plain']:.5f})", f"{_f(s['reldistill_docs_per_s'])} docs/s", f"{s['ratio_vs_plain']:.2f}× plain"))
    q = res["query_encode"]
    rows.append(("query encode (torch)", f"{q['torch']['n']} queries, one at a time", f"p50 {q['torch']['p50_ms']:.2f} ms · p99 {q['torch']['p99_ms']:.2f} ms", "baseline"))
    st = q["new"]["steps_ms"]
    steps = ", ".join(f"{k[:-3]} {v:.2f}" for k, v in st.items() if k != "total_ms")
    gate = q["new"].get("int8_gate")
    how = "same queries, in turns of 50 with the baseline (2 untimed first)"
    if gate:
        how += (f"; int8 queries, dev nDCG@10 {gate['dev_ndcg10_int8']:.4f} vs fp32 {gate['dev_ndcg10_fp32']:.4f} "
                f"(drop {gate['drop']:.4f} < {gate['max_drop']})")
    rows.append((f"query encode ({q['new']['runtime']}, one-query path)", how,
                 f"p50 {q['new']['p50_ms']:.2f} ms · p99 {q['new']['p99_ms']:.2f} ms",
                 f"{q['torch']['p50_ms'] / q['new']['p50_ms']:.2f}× faster p50 (median steps ms: {steps})"))
    ix = res["index"]
    for key, label in (("encode", "encode catalog"), ("faiss_flat", "FAISS flat"), ("faiss_hnsw", "FAISS HNSW"), ("bm25", "BM25 (bm25s)")):
        st = ix[key]
        mem = f"peak {_f(st['traced_peak_mib'])} MiB traced"
        if "rss_growth_mib" in st:
            mem += f", RSS {st['rss_growth_mib']:+,.1f} MiB"
        rows.append((f"index build: {label}", f"{ix['products']:,} products", f"{st['seconds']:.2f} s", mem))
    ref = res["search"].get("dense-flat", {}).get("total_ms", {}).get("p50_ms")
    base = res["search"].get("hybrid-torch", {}).get("total_ms", {}).get("p50_ms")
    for mode, stages in res["search"].items():
        tot = stages["total_ms"]
        parts = ", ".join(f"{k[:-3]} {v['p50_ms']:.1f}" for k, v in stages.items() if k != "total_ms")
        rel = f"{tot['p50_ms'] / ref:.2f}× dense-flat p50" if ref else ""
        if mode == "hybrid" and base:
            rel = f"{base / tot['p50_ms']:.2f}× faster p50 than hybrid-torch; " + rel
        full = res["search"].get(f"{mode}-full-forward", {}).get("total_ms", {}).get("p50_ms")
        if full:  # rerank with the shared prefixes against the same rerank on the full forward, same queries
            rel = f"{full / tot['p50_ms']:.2f}× faster p50 than {mode}-full-forward; " + rel
        rows.append((f"search latency: {mode}", f"{tot['n']} queries, {res['search_index_products']:,} products, k=10",
                     f"p50 {tot['p50_ms']:.1f} ms · p99 {tot['p99_ms']:.1f} ms", f"{rel} (p50 stages ms: {parts})"))
    g = res.get("gpu")
    if g:
        for kind in ("scoring", "training"):
            d = g[kind]
            rows.append((f"GPU teacher {kind} (bf16)", f"{g['gpu']}, Llama-3.2-1B shape, batch {g['batch']}×{g['seq_len']}",
                         f"{_f(d['tokens_per_s'], 0)} tok/s · {_f(d['tflops'], 1)} TFLOP/s",
                         f"MFU {d['mfu']:.1%} of measured {_f(g['bf16_matmul_peak_tflops'])} TFLOP/s"))
    table = ["| benchmark | setting | measured | relative |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    notes = ["", f"Teacher: {t['model']} ({t['matmul_params']:,} matmul parameters; FLOPs = 2 × params × tokens, "
             f"attention scores excluded); load {t['load_s']:.1f} s. Student: {s['model']}.",
             "GPU teacher: not run (no CUDA device on this machine)." if not g else
             f"GPU peak memory {g['peak_memory_gib']:.1f} GiB; LoRA trainable params {g['lora_trainable_params']:,}.",
             f"Student backend: {s['backend']} (hybrid-torch and the baselines run the same student through PyTorch). "
             "Timings on a shared machine are inflated by its load; compare the ratios, taken in the same run.",
             f"Total bench time {res['total_s']:.0f} s."]
    return "\n".join(head + table + notes) + "\n"


def write_bench(directory: Path, res: dict[str, Any]) -> None:
    """``bench.json`` and ``bench.md`` into ``directory`` (atomic)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "bench.json", {k: v for k, v in res.items() if k != "markdown"})
    write_text(directory / "bench.md", res["markdown"])
