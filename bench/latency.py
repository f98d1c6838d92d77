"""Search latency benchmark: p50/p99 per stage and end to end, plus dense search over 1M synthetic vectors.

* On a run's index: every judged test query (or ``queries``) through bm25, dense, hybrid and
  hybrid+rerank (rerank only when the run has a teacher or a reranker is given), one query at a time,
  with the per-stage milliseconds the pipeline reports.
* Synthetic: ``synthetic_n`` random unit vectors of dimension ``dim`` in FAISS flat (exact inner
  product) and HNSW; single-query search p50/p99, HNSW build time and recall@k against flat.

Callable as ``latency(...)`` (returns a dict) and as a script:
``python -m reldistill.bench.latency --run runs/demo [--synthetic-n 1000000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reldistill.artifacts import write_json
from reldistill.progress import progress_bar
from reldistill.settings import Runtime
from reldistill.teacher.score_memo import memo_off

STAGES = ("bm25_ms", "encode_ms", "dense_ms", "fuse_ms", "rerank_ms", "total_ms")


def _pcts(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "mean": round(float(a.mean()), 3), "n": int(len(a))}


def pipeline_latency(pipeline, queries: Sequence[str], modes: Sequence[str] = ("bm25", "dense", "hybrid", "rerank"),
                     k: int = 10, rerank_k: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """{mode: {stage: {p50, p99, mean, n}}} from one search per query per mode (after one warm-up).

    The teacher's score memo is off meanwhile: rerank times the model, not the memo (the warm-up query comes again)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode in modes:
        if mode == "rerank" and not pipeline.has_reranker:
            continue
        memo = getattr(getattr(pipeline.reranker, "teacher", None), "memo", None) if mode == "rerank" else None
        with memo_off(memo) if memo is not None else contextlib.nullcontext():
            pipeline.search(queries[0], mode=mode, k=k, rerank_k=rerank_k)  # warm-up (lazy teacher load, caches)
            per_stage: dict[str, list[float]] = {}
            for q in queries:
                for stage, ms in pipeline.search(q, mode=mode, k=k, rerank_k=rerank_k).timings_ms.items():
                    per_stage.setdefault(stage, []).append(ms)
        out[mode] = {s: _pcts(per_stage[s]) for s in STAGES if s in per_stage}
    return out


def synthetic_latency(n: int = 1_000_000, dim: int = 384, n_queries: int = 200, k: int = 10, hnsw_m: int = 16,
                      ef_construction: int = 40, ef_search: int = 64, seed: int = 0, chunk: int = 100_000,
                      flat_queries: int | None = None, clusters: int = 1000, spread: float = 0.6,
                      threads: int | None = None, search_threads: int = 1) -> dict[str, Any]:
    """Single-query flat vs HNSW search over ``n`` synthetic unit vectors (HNSW built with all cores).

    ``clusters`` > 0 draws points around random centroids (embedding-like); 0 draws uniformly on the
    sphere, the worst case for graph indexes. The HNSW storage doubles as the flat index (no copy).
    """
    import faiss

    rng = np.random.default_rng(seed)
    faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
    centroids = rng.standard_normal((clusters, dim), dtype=np.float32) if clusters else None

    def sample(m: int) -> np.ndarray:
        x = rng.standard_normal((m, dim), dtype=np.float32)
        if centroids is not None:  # embedding-like: points spread around topic centroids
            x = centroids[rng.integers(0, clusters, m)] + spread * x
        faiss.normalize_L2(x)
        return x

    hnsw = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    t0 = time.perf_counter()
    with progress_bar(n, f"HNSW build ({n:,} x {dim})", "vectors") as advance:
        for start in range(0, n, chunk):
            x = sample(min(chunk, n - start))
            hnsw.add(x)
            advance(len(x))
    build_s = time.perf_counter() - t0
    hnsw.hnsw.efSearch = ef_search
    faiss.omp_set_num_threads(search_threads)  # a service answers each request on one thread
    flat = faiss.downcast_index(hnsw.storage)  # IndexFlatIP over the same vectors: exact search, no copy
    q = sample(n_queries)
    res: dict[str, Any] = {"n": n, "dim": dim, "k": k, "threads": search_threads, "build_threads": threads or os.cpu_count(),
                           "data": f"{clusters} gaussian clusters, spread {spread}" if clusters else "uniform on the sphere",
                           "hnsw": {"M": hnsw_m, "efConstruction": ef_construction, "efSearch": ef_search,
                                    "build_s": round(build_s, 1)}}
    for name, index, nq in (("flat", flat, flat_queries or n_queries), ("hnsw", hnsw, n_queries)):
        times, found = [], []
        for i in range(nq):
            t = time.perf_counter()
            _, ids = index.search(q[i:i + 1], k)
            times.append((time.perf_counter() - t) * 1000)
            found.append(ids[0])
        res[name] = {**res.get(name, {}), **_pcts(times), "ids": found}
    exact = res["flat"].pop("ids")
    approx = res["hnsw"].pop("ids")
    m = min(len(exact), len(approx))
    res["hnsw"]["recall_at_k"] = round(float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx[:m], exact[:m])])), 4)
    return res


def latency(run_dir: str | Path | None = None, pipeline=None, queries: Sequence[str] | None = None, k: int = 10,
            rerank_k: int | None = None, modes: Sequence[str] = ("bm25", "dense", "hybrid", "rerank"),
            max_queries: int | None = None, synthetic_n: int = 1_000_000, dim: int = 384, hnsw_m: int = 16,
            ef_construction: int = 40, ef_search: int = 64, synthetic_queries: int = 200, clusters: int = 1000,
            print_table: bool = True, runtime: Runtime | None = None) -> dict[str, Any]:
    """Benchmark a run's pipeline (judged test queries by default) and/or synthetic flat vs HNSW; prints a table
    (``runtime``: a ``reldistill.settings.Runtime`` the run's pipeline loads with)."""
    from reldistill.retrieval.pipeline import SearchPipeline
    from reldistill.teacher.rerank import TeacherReranker

    report: dict[str, Any] = {}
    if pipeline is None and run_dir is not None:
        pipeline = SearchPipeline.from_run(run_dir, reranker_loader=functools.partial(TeacherReranker.load, runtime=runtime),
                                           runtime=runtime)
    if pipeline is not None:
        if queries is None:
            queries = _judged_test_queries(pipeline)
        queries = list(queries)[: max_queries or None]
        report["catalog"] = {"products": len(pipeline.catalog), "queries": len(queries), "k": k,
                             "rerank_k": rerank_k or pipeline.config.rerank_k, "student": pipeline.student_id,
                             "reranker": getattr(pipeline._reranker, "name", None) if pipeline.has_reranker else None,
                             "modes": pipeline_latency(pipeline, queries, modes, k, rerank_k)}
    if synthetic_n:
        report["synthetic"] = synthetic_latency(synthetic_n, dim, synthetic_queries, k, hnsw_m, ef_construction, ef_search,
                                                clusters=clusters)
    if print_table:
        print_report(report)
    return report


def _judged_test_queries(pipeline) -> list[str]:
    from reldistill.config import DataConfig
    from reldistill.data import load_esci

    try:
        from reldistill.retrieval.build import read_index_manifest

        m = read_index_manifest(pipeline.index_dir) if getattr(pipeline, "index_dir", None) else {}
        path = (m.get("data") or {}).get("path") or DataConfig().path
        test = load_esci(DataConfig(path=path)).split("test")
        qs = list(dict.fromkeys(test["query"]))
        if qs:
            return qs
    except Exception:  # noqa: BLE001 - fall back to the judged queries the index carries
        pass
    return pipeline.catalog.example_queries(50)


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console() if Console().is_terminal else Console(width=150)
    if "catalog" in report:
        c = report["catalog"]
        t = Table(title=f"search latency, ms — {c['products']:,} products, {c['queries']} queries, k={c['k']}, "
                        f"rerank_k={c['rerank_k']}", title_justify="left")
        t.add_column("mode")
        for s in STAGES:
            t.add_column(f"{s[:-3]} p50/p99", justify="right")
        for mode, stages in c["modes"].items():
            t.add_row("hybrid+rerank" if mode == "rerank" else mode,
                      *(f"{stages[s]['p50']:.2f} / {stages[s]['p99']:.2f}" if s in stages else "-" for s in STAGES))
        con.print(t)
    if "synthetic" in report:
        s = report["synthetic"]
        t = Table(title=f"dense search over {s['n']:,} synthetic vectors (dim {s['dim']}, {s['data']}, k={s['k']}, "
                        f"search on {s['threads']} thread(s), build on {s['build_threads']})", title_justify="left")
        for col in ("index", "p50 ms", "p99 ms", "queries", "recall@k vs flat", "build s"):
            t.add_column(col, justify="right")
        t.add_row("flat (exact IP)", f"{s['flat']['p50']:.2f}", f"{s['flat']['p99']:.2f}", str(s["flat"]["n"]), "1.0", "-")
        h = s["hnsw"]
        t.add_row(f"HNSW M={h['M']} efC={h['efConstruction']} efS={h['efSearch']}", f"{h['p50']:.2f}", f"{h['p99']:.2f}",
                  str(h["n"]), f"{h['recall_at_k']:.3f}", f"{h['build_s']:.0f}")
        con.print(t)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="run directory with index/ (and teacher/ for rerank)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rerank-k", type=int, default=None)
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--synthetic-n", type=int, default=1_000_000, help="0 skips the synthetic benchmark")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=40)
    ap.add_argument("--ef-search", type=int, default=64)
    ap.add_argument("--synthetic-queries", type=int, default=200)
    ap.add_argument("--clusters", type=int, default=1000, help="synthetic data: gaussian clusters (0 = uniform on the sphere)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for query encoding / rerank")
    ap.add_argument("--json", help="also write the report to this JSON file")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    rep = latency(a.run, k=a.k, rerank_k=a.rerank_k, max_queries=a.max_queries, synthetic_n=a.synthetic_n, dim=a.dim,
                  hnsw_m=a.hnsw_m, ef_construction=a.ef_construction, ef_search=a.ef_search,
                  synthetic_queries=a.synthetic_queries, clusters=a.clusters, runtime=Runtime.from_env())
    if a.json:
        write_json(a.json, rep)


if __name__ == "__main__":
    main()
