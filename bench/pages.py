"""The generated docs page of the speed benchmarks: docs/benchmarks.md, rendered from `reldistill bench --json` —
the headline figures as same-run ratios, then bench's full table, naming the command, commit and CPU they come from."""

from __future__ import annotations

from typing import Any

from reldistill.bench.table import figures, render
from reldistill.errors import UserError
from reldistill.generated_pages import MARKER, source_lines

BENCHMARKS_FILE = "benchmarks.md"


def _num(v: Any, unit: str = "", digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}{unit}"


def _ratio(v: Any) -> str:
    return "–" if v is None else f"**{v:.2f}×**"


def headline_rows(f: dict[str, Any], bench: dict[str, Any] | None = None) -> list[tuple[str, str, str, str]]:
    """(figure, baseline, measured, same-run ratio) for the headline figures of ``bench["figures"]``; each baseline
    is the one its ratio was taken against in the same run."""
    int8_fp32 = ((bench or {}).get("teacher", {}).get("int8") or {}).get("float32_pairs_per_s")  # re-timed beside int8
    spear = f.get("teacher_prefix_kv_spearman_vs_fp32")
    int8_kept = "kept" if f.get("teacher_int8_kept") else "not kept"
    rows = [
        ("one-query encode p50 (SentenceTransformer.encode + PyTorch → query encoder, "
         f"{f.get('query_encode_backend', '?')})",
         _num(f.get("query_encode_p50_ms_torch"), " ms", 2), _num(f.get("query_encode_p50_ms_new"), " ms", 2),
         _ratio(f.get("query_encode_speedup"))),
        ("hybrid search p50, query encode included (PyTorch → query encoder)",
         _num(f.get("hybrid_p50_ms_torch"), " ms"), _num(f.get("hybrid_p50_ms_new"), " ms"), _ratio(f.get("hybrid_p50_speedup"))),
        (f"catalog encode (PyTorch → {f.get('student_backend', '?')}, {f.get('student_precision', '?')})",
         _num(f.get("catalog_encode_docs_per_s_torch"), " docs/s"), _num(f.get("catalog_encode_docs_per_s_new"), " docs/s"),
         _ratio(f.get("catalog_encode_speedup"))),
        ("teacher fp32 scoring, full forward → shared prefix"
         + (f" (Spearman {spear:.4f})" if spear is not None else ""),
         _num(f.get("teacher_fp32_full_pairs_per_s"), " pairs/s"), _num(f.get("teacher_fp32_prefix_kv_pairs_per_s"), " pairs/s"),
         _ratio(f.get("teacher_prefix_kv_speedup_vs_fp32"))),
        (f"teacher int8 dynamic vs fp32 (Spearman {_num(f.get('teacher_int8_spearman_vs_fp32'), '', 4)}; {int8_kept})",
         _num(int8_fp32, " pairs/s"), _num(f.get("teacher_int8_pairs_per_s"), " pairs/s"),
         _ratio(f.get("teacher_int8_speedup_vs_fp32"))),
        ("rerank of the fused top 20, p50 (full forward → shared prefix)",
         _num(f.get("rerank_top20_p50_ms_full_forward"), " ms", 0), _num(f.get("rerank_top20_p50_ms"), " ms", 0),
         _ratio(f.get("rerank_prefix_kv_speedup"))),
    ]
    if f.get("teacher_dtype") not in (None, "float32"):  # the dtype `auto` picks on this CPU, against fp32
        rows.insert(4, (f"teacher scoring, fp32 → {f['teacher_dtype']} (the dtype `auto` picks here)",
                        _num(f.get("teacher_fp32_pairs_per_s"), " pairs/s"), _num(f.get("teacher_pairs_per_s"), " pairs/s"),
                        _ratio(f.get("teacher_speedup_vs_fp32"))))
    frac = f.get("teacher_peak_fraction")
    if frac is not None:
        peak = (f.get("matmul_peak_gflops") or {}).get(f.get("teacher_dtype"))
        rows.append((f"teacher {f.get('teacher_dtype')} scoring, share of the matmul peak measured in the same run",
                     _num(peak, " GFLOP/s", 0), f"{frac:.1%}", "–"))
    return rows


def benchmarks_page(bench: dict[str, Any], bench_path: str, render_command: str) -> str:
    """docs/benchmarks.md: the headline figures as same-run ratios, then bench's full table, with their source."""
    if "machine" not in bench or "teacher" not in bench:
        raise UserError(f"{bench_path} is not the output of `reldistill bench --json` (no machine/teacher figures) — "
                        "write it with `reldistill bench --run RUN` (RUN/eval/bench.json) or `reldistill bench --json > FILE`.")
    figs = bench.get("figures") or figures(bench)
    prov = bench.get("provenance") or {"command": "reldistill bench"}
    out = ["# Benchmarks", "", MARKER, "",
           f"Rendered by `{render_command}` from `{bench_path}`. Every ratio compares two figures measured in the "
           "same run on the same machine (baseline → the path reldistill uses); absolute times depend on the "
           "machine and its load. The figures come from:", ""]
    out += source_lines(prov, bench.get("machine")) + [""]
    out += ["## Headline figures", "", "| figure | baseline | reldistill | ratio |", "|---|---:|---:|---:|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in headline_rows(figs, bench)]
    skipped = bench.get("skipped") or {}
    if skipped:
        out += [""] + [f"- {dt}: {why}" for dt, why in skipped.items()]
    table = render(bench).splitlines()
    out += ["", "## Every figure", ""] + table[2:]  # its first line repeats the machine named above
    return "\n".join(out).rstrip() + "\n"
