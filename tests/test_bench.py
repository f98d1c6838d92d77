"""`reldistill bench` on a small slice of the sample with a tiny random teacher: one table, every figure measured."""

from __future__ import annotations

import json
import re

import pytest

from conftest import assert_user_error
from test_eval_cli import small_esci  # noqa: F401 - shared fixture


@pytest.mark.slow
def test_bench_prints_one_table(cli, small_esci, tmp_path):  # noqa: F811
    from reldistill.teacher.tiny import build_tiny_teacher

    run = tmp_path / "run"
    build_tiny_teacher(run / "teacher")
    proc = cli("bench", "--run", run, "--data", small_esci, "--teacher-pairs", "8", "--student-docs", "32",
               "--index-docs", "120", "--search-queries", "5", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table[1:]]
    for want in ("matmul peak", "teacher scoring (float32)", "teacher scoring (bfloat16)", "student encode (plain ST)",
                 "student encode (reldistill)", "index build: FAISS flat", "index build: BM25 (bm25s)",
                 "search latency: bm25", "search latency: dense-flat", "search latency: hybrid", "search latency: rerank@20"):
        assert want in names, (want, names)
    assert proc.stdout.startswith("# reldistill bench — ") and "cores" in proc.stdout.splitlines()[0]
    assert "GPU teacher: not run" in proc.stdout or "GPU teacher scoring" in proc.stdout
    res = json.loads((tmp_path / "out" / "bench.json").read_text())
    t = res["teacher"]["dtypes"]
    assert set(t) == {"float32", "bfloat16"}
    for d in t.values():
        assert d["pairs_per_s"] > 0 and d["tokens_per_s"] > d["pairs_per_s"] and 0 < d["peak_fraction"]
    assert res["teacher"]["model"] == str(run / "teacher")
    # Figures in the table are the measured ones (no literals): the fp32 pairs/s printed equals bench.json's.
    row = next(line for line in table if line.startswith("| teacher scoring (float32)"))
    assert re.search(r"([\d,.]+) pairs/s", row).group(1) == f"{t['float32']['pairs_per_s']:,.1f}"
    assert res["search"]["hybrid"]["total_ms"]["n"] == 5
    assert (tmp_path / "out" / "bench.md").read_text().strip() in proc.stdout


def test_bench_bad_input(cli, tmp_path):
    assert_user_error(cli("bench", "--run", tmp_path / "nope"), "nope", "does not exist")
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("bench:\n  teacher_pairz: 3\n")
    assert_user_error(cli("bench", "--config", cfg), "teacher_pairz")
    cfg.write_text("bench:\n  student_docs: 0\n")
    assert_user_error(cli("bench", "--config", cfg), "bench.student_docs")
