"""Student and search benchmarks: encoding docs/s, index build time + memory, search latency per mode.

Index building and search go through the retrieval stage's own classes (``DenseIndex``,
``BM25Index``, ``SearchPipeline``), so the figures are those of the search stack users run.
"""

from __future__ import annotations

import gc
import logging
import time
import tracemalloc
from typing import Any

import numpy as np

from reldistill.precision import student_dtype
from reldistill.recipe.retrieval import SearchConfig
from reldistill.student import encode_documents
from reldistill.student.encode import student_runtime
from reldistill.student.query_encoder import QueryEncoder
from reldistill.teacher.score_memo import memo_off


def _rss_mib() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return None


def student_encoding(baseline, model, texts: list[str], batch_size: int = 64) -> dict[str, Any]:
    """Catalog docs/s: plain fp32 ``SentenceTransformer.encode`` on the torch ``baseline`` (today's path) vs
    ``reldistill.student.encode_documents`` on ``model`` (its backend and precision), and their lowest cosine."""
    warm = texts[: min(len(texts), batch_size)]
    baseline.encode(warm, batch_size=batch_size, show_progress_bar=False)
    encode_documents(model, warm, batch_size=batch_size)
    t = time.perf_counter()
    ref = baseline.encode(texts, batch_size=batch_size, show_progress_bar=False, normalize_embeddings=True)
    plain = time.perf_counter() - t
    t = time.perf_counter()
    emb = encode_documents(model, texts, batch_size=batch_size)
    ours = time.perf_counter() - t
    return {"docs": len(texts), "batch_size": batch_size, "dim": int(emb.shape[1]),
            "backend": getattr(model, "reldistill_backend", "torch"),
            "precision": str(student_dtype(runtime=student_runtime(model))).removeprefix("torch."),
            "plain_docs_per_s": len(texts) / plain, "reldistill_docs_per_s": len(texts) / ours,
            "ratio_vs_plain": plain / ours, "min_cosine_vs_plain": float(np.min(np.sum(ref * emb, axis=1)))}


def query_encoding(encoders: dict[str, Any], queries: list[str], block: int = 50, warm: int = 2) -> dict[str, dict[str, Any]]:
    """p50/p99 ms of one query at a time through each query encoder (``QueryEncoder.encode``).

    The encoders take turns in blocks of ``block`` queries, so a shared machine's load hits all alike; each
    block starts with ``warm`` untimed queries, so no path is timed while the previous one's OpenMP threads
    still spin or its weights still fill the caches (timed back to back, the first queries after a switch
    read ~10–25% slower). Each entry also names its runtime, the dev-gate verdict that admitted an int8
    runtime (``int8_gate``, else None) and the median ms of its steps (tokenise, forward, pool) on the first query."""
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for e in encoders.values():
        e.encode(queries[:1])
    for start in range(0, len(queries), block):
        for name, e in encoders.items():
            for q in queries[start:start + warm]:
                e.encode([q])
            for q in queries[start:start + block]:
                t = time.perf_counter()
                e.encode([q])
                times[name].append((time.perf_counter() - t) * 1000)
    return {name: {**_pct(v), "runtime": encoders[name].runtime, "int8_gate": getattr(encoders[name], "int8_gate", None),
                   "steps_ms": encoders[name].timings(queries[0])} for name, v in times.items()}


def _measured(fn, *args, **kwargs) -> tuple[Any, dict[str, float]]:
    """Run ``fn``; return its result and seconds, Python-heap peak (tracemalloc) and RSS growth in MiB."""
    gc.collect()
    rss0 = _rss_mib()
    tracemalloc.start()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    sec = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _rss_mib()
    stats = {"seconds": sec, "traced_peak_mib": peak / 2**20}
    if rss0 is not None and rss1 is not None:
        stats["rss_growth_mib"] = rss1 - rss0
    return out, stats


def build_indexes(model, products, examples, batch_size: int = 64) -> tuple[dict[str, Any], dict[str, Any]]:
    """Encode the catalog, build FAISS flat + HNSW and BM25; returns (built objects, timings/memory)."""
    from reldistill.index.catalog import Catalog
    from reldistill.index.dense import DenseIndex
    from reldistill.index.lexical import BM25Index

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG
    ids = products["product_id"].astype(str).tolist()
    texts = products["text"].astype(str).tolist()
    emb, enc = _measured(encode_documents, model, texts, batch_size=batch_size)
    flat, flat_s = _measured(DenseIndex.build, emb, ids, kind="flat")
    hnsw, hnsw_s = _measured(DenseIndex.build, emb, ids, kind="hnsw")
    bm25, bm25_s = _measured(BM25Index.build, ids, texts)
    catalog = Catalog.from_data(products, examples)
    stats = {"products": len(ids), "encode": enc, "faiss_flat": flat_s, "faiss_hnsw": hnsw_s, "bm25": bm25_s,
             "embeddings_mib": emb.nbytes / 2**20}
    return {"flat": flat, "hnsw": hnsw, "bm25": bm25, "catalog": catalog}, stats


def _pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": int(len(a))}


def search_latency(built: dict[str, Any], model, queries: list[str], reranker=None, rerank_queries: int = 5,
                   rerank_k: int = 20, baseline=None) -> dict[str, Any]:
    """Per-query latency (p50/p99 of total and of each stage) for bm25, dense (flat and HNSW), hybrid, rerank;
    with ``baseline`` (the torch student) also ``hybrid-torch``: the same hybrid search on today's path."""
    from reldistill.retrieval.pipeline import SearchPipeline

    out: dict[str, Any] = {}
    cfg = SearchConfig(rerank_k=rerank_k)
    plans = [("bm25", "flat", "bm25"), ("dense", "flat", "dense-flat"), ("dense", "hnsw", "dense-hnsw"),
             ("hybrid", "flat", "hybrid")]
    if baseline is not None:
        plans.append(("hybrid", "flat", "hybrid-torch"))
    for mode, kind, label in plans:
        student = baseline if label == "hybrid-torch" else model
        pipe = SearchPipeline(built[kind], built["bm25"], built["catalog"], student, config=cfg, name=label)
        if label == "hybrid-torch":  # today's path: sentence-transformers' encode on PyTorch
            pipe.query_encoder = QueryEncoder(baseline, "plain")
        pipe.search(queries[0], mode=mode, k=10)  # warm-up
        stages: dict[str, list[float]] = {}
        for q in queries:
            r = pipe.search(q, mode=mode, k=10)
            for key, ms in r.timings_ms.items():
                stages.setdefault(key, []).append(ms)
        out[label] = {key: _pct(v) for key, v in stages.items()}
    if reranker is not None:
        from reldistill.teacher.teacher import running_with

        pipe = SearchPipeline(built["flat"], built["bm25"], built["catalog"], model, reranker=reranker, config=cfg, name="rerank")
        paths = {f"rerank@{rerank_k}-full-forward": False, f"rerank@{rerank_k}": True}  # today's fp32 path, the shared prefix
        runs: dict[str, dict[str, list[float]]] = {label: {} for label in paths}
        teacher = reranker.teacher
        with memo_off(teacher.memo):  # time the model, not the teacher's score memo
            for q in queries[:rerank_queries]:
                for label, on in paths.items():  # alternating per query: a shared machine's load hits both alike
                    with running_with(teacher, teacher_prefix_kv=on):
                        r = pipe.search(q, mode="rerank", k=10, rerank_k=rerank_k)
                    for key, ms in r.timings_ms.items():
                        runs[label].setdefault(key, []).append(ms)
        out.update({label: {key: _pct(v) for key, v in stages.items()} for label, stages in runs.items()})
    return out
