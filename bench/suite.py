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

from reldistill.bench.compute import cpu_dtypes, machine, matmul_peak, teacher_throughput
from reldistill.bench.gpu import gpu_teacher_bench
from reldistill.bench.search import build_indexes, query_encoding, search_latency, student_encoding
from reldistill.bench.table import figures, render
from reldistill.config import DataConfig
from reldistill.data import load_esci
from reldistill.progress import console
from reldistill.provenance import provenance
from reldistill.recipe.eval import BenchConfig
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime
from reldistill.student import load_student
from reldistill.student.query_encoder import QueryEncoder, query_encoder
from reldistill.teacher.rerank import TeacherReranker

log = logging.getLogger(__name__)


def _step(name: str):
    return console.status(f"[bold]bench[/]: {name}")


def run_suite(cfg: BenchConfig, data_cfg: DataConfig, run: Path | None = None, *,
              runtime: Runtime | None = None) -> dict[str, Any]:
    """Run every benchmark and return the results with a ``markdown`` rendering (``runtime``: how the models run;
    recorded in the provenance)."""
    import torch

    t_all = time.perf_counter()
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
        model = load_student(student_name, runtime=runtime)  # the backend runtime.student_backend picks
    products = data.products if cfg.index_docs is None else data.products.head(cfg.index_docs)
    with _step(f"student encoding, {min(cfg.student_docs, len(data.products))} docs × 2 paths"):
        res["student"] = {"model": student_name, **student_encoding(baseline, model, data.products["text"].head(cfg.student_docs).tolist())}
    with _step(f"index build, {len(products):,} products"):
        built, res["index"] = build_indexes(model, products, data.examples)
    queries = list(dict.fromkeys(list(data.split("test")["query"]) + list(data.examples["query"])))[: cfg.search_queries]
    with _step(f"query encoding, {len(queries)} queries one at a time × 2 paths"):
        # baseline: sentence-transformers' encode on PyTorch; new: the query encoder search/serve/eval use
        res["query_encode"] = query_encoding({"torch": QueryEncoder(baseline, "plain"), "new": query_encoder(model)}, queries)
    reranker = None
    if teacher_dir is not None:
        reranker = TeacherReranker.load(teacher_dir, runtime=runtime)
    with _step(f"search latency, {len(queries)} queries per mode"):
        res["search"] = search_latency(built, model, queries, reranker, baseline=baseline)
    res["search_index_products"] = len(products)
    if torch.cuda.is_available():
        with _step("GPU teacher (Llama-3.2-1B shape, random weights)"):
            res["gpu"] = gpu_teacher_bench(cfg.gpu_model_config, cfg.gpu_seq_len, cfg.gpu_batch)
    else:
        res["gpu"] = None
    res["total_s"] = time.perf_counter() - t_all
    res["figures"] = figures(res)
    res["markdown"] = render(res)
    return res
