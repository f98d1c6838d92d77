"""`reldistill bench` on a small slice of the sample with a tiny random teacher: one table, every figure measured."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import assert_user_error


FIGURES = ("query_encode_p50_ms_torch", "query_encode_p50_ms_new", "query_encode_speedup", "hybrid_p50_ms_new",
           "hybrid_p99_ms_new", "hybrid_p50_ms_torch", "hybrid_p99_ms_torch", "catalog_encode_docs_per_s_torch",
           "catalog_encode_docs_per_s_new", "catalog_encode_speedup", "teacher_pairs_per_s", "teacher_peak_fraction",
           "rerank_top20_p50_ms", "query_encode_p99_ms_torch", "query_encode_p99_ms_new",
           "teacher_fp32_prefix_kv_pairs_per_s", "teacher_fp32_full_pairs_per_s", "teacher_prefix_kv_speedup_vs_fp32",
           "rerank_top20_p50_ms_full_forward", "rerank_prefix_kv_speedup")


@pytest.mark.slow
@pytest.mark.parametrize("cpu_bf16,backend", [("1", "torch"), ("0", "onnx")])
def test_bench_prints_one_table(cli, small_esci, tmp_path, cpu_bf16, backend):  # noqa: F811
    from reldistill.precision import cpu_has_bf16
    from tests.builders.tiny_teacher import build_tiny_teacher

    native_bf16 = cpu_bf16 == "1" and cpu_has_bf16()
    run = tmp_path / "run"
    build_tiny_teacher(run / "teacher")
    proc = cli("bench", "--run", run, "--data", small_esci, "--teacher-pairs", "8", "--student-docs", "32",
               "--index-docs", "120", "--search-queries", "5", "--out", tmp_path / "out",
               env={"RELDISTILL_CPU_BF16": cpu_bf16, "RELDISTILL_STUDENT_BACKEND": backend,
                    "RELDISTILL_STUDENT_QUERY_BACKEND": backend, "RELDISTILL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table[1:]]
    wants = ["matmul peak", "teacher scoring (float32)", "student encode (plain ST)", "student encode (reldistill)",
             "query encode (torch)", f"query encode ({backend}, one-query path)", "index build: FAISS flat", "index build: BM25 (bm25s)",
             "search latency: bm25", "search latency: dense-flat", "search latency: hybrid", "search latency: hybrid-torch",
             "search latency: rerank@20", "search latency: rerank@20-full-forward", "teacher scoring (int8 dynamic, linear layers)",
             "teacher scoring (float32, shared prefix once)"]
    wants.append("teacher scoring (bfloat16)" if native_bf16 else "matmul peak / teacher scoring (bfloat16)")
    for want in wants:
        assert want in names, (want, names)
    head = proc.stdout.splitlines()[0]
    assert head.startswith("# reldistill bench — ") and "cores" in head and "CPU flags:" in head
    assert "GPU teacher: not run" in proc.stdout or "GPU teacher scoring" in proc.stdout
    res = json.loads((tmp_path / "out" / "bench.json").read_text())
    t = res["teacher"]["dtypes"]
    assert set(t) == ({"float32", "bfloat16"} if native_bf16 else {"float32"})
    if not native_bf16:
        assert "bfloat16" in res["skipped"] and "no AVX512-BF16 or AMX" in proc.stdout
    fig = res["figures"]
    for name in FIGURES:
        assert isinstance(fig[name], float) and fig[name] > 0, (name, fig.get(name))
    assert fig["teacher_prefix_kv_spearman_vs_fp32"] > 0.9999  # exact: the same logits up to fp32 rounding
    assert 0 < fig["teacher_prefix_kv_tokens_run_fraction"] < 1  # the shared prefixes are not run per pair
    assert -1.0 <= fig["teacher_int8_spearman_vs_fp32"] <= 1.0 and fig["teacher_int8_pairs_per_s"] > 0
    assert fig["teacher_int8_kept"] == (fig["teacher_int8_spearman_vs_fp32"] >= 0.99 and fig["teacher_int8_speedup_vs_fp32"] > 1)
    assert fig["student_backend"] == backend and fig["teacher_dtype"] == ("bfloat16" if native_bf16 else "float32")
    assert fig["query_encode_speedup"] == pytest.approx(fig["query_encode_p50_ms_torch"] / fig["query_encode_p50_ms_new"])
    assert fig["query_encode_backend"] == backend and res["query_encode"]["torch"]["runtime"] == "plain"
    assert fig["query_encode_int8"] is False and fig["query_encode_int8_dev_drop"] is None  # int8 off: no gate, no int8
    steps = fig["query_encode_steps_ms_new"]
    assert set(steps) == {"tokenise_ms", "forward_ms", "pool_ms", "total_ms"} and all(v > 0 for v in steps.values())
    assert fig["cpu"] == res["machine"]["cpu"] and fig["cpu_flags"] == res["machine"]["cpu_flags"]
    for d in t.values():
        assert d["pairs_per_s"] > 0 and d["tokens_per_s"] > d["pairs_per_s"] and 0 < d["peak_fraction"]
    assert res["teacher"]["model"] == str(run / "teacher")
    # Figures in the table are the measured ones (no literals): the fp32 pairs/s printed equals bench.json's.
    row = next(line for line in table if line.startswith("| teacher scoring (float32)"))
    assert re.search(r"([\d,.]+) pairs/s", row).group(1) == f"{t['float32']['pairs_per_s']:,.1f}"
    assert res["search"]["hybrid"]["total_ms"]["n"] == 5 and res["search"]["hybrid-torch"]["total_ms"]["n"] == 5
    assert (tmp_path / "out" / "bench.md").read_text().strip() in proc.stdout


def test_bench_bad_input(cli, tmp_path):
    assert_user_error(cli("bench", "--run", tmp_path / "nope"), "nope", "does not exist")
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("bench:\n  teacher_pairz: 3\n")
    assert_user_error(cli("bench", "--config", cfg), "teacher_pairz")
    cfg.write_text("bench:\n  student_docs: 0\n")
    assert_user_error(cli("bench", "--config", cfg), "bench.student_docs")
