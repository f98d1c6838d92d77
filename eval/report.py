"""An evaluation's report rendered and written: report.json, report.md (run root), TREC run files and plots (eval/),
manifest last; and where an eval on other data than the run's own writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reldistill.artifacts import MANIFEST, atomic_path, read_json, write_json, write_manifest, write_text
from reldistill.calibration import fitted_text
from reldistill.eval.findings import findings
from reldistill.eval.metrics import to_run
from reldistill.eval.order import ordered
from reldistill.eval.plots import plot_metric_bars, plot_ndcg_deltas, plot_reliability
from reldistill.provenance import provenance
from reldistill.run_layout import REPORT_JSON, REPORT_MD, RunDir, safe_name
from reldistill.settings import Runtime

MARK = {"bm25": "ᵇ", "dense-base": "ᵈ"}  # significantly better than BM25 / the base student


def _cell(report: dict, task: str, system: str, metric: str) -> str:
    value = report["systems" if task == "retrieval" else "task1"][system][metric]
    marks = ""
    for base, mark in MARK.items():
        t = report["significance"][task].get(base, {}).get(system, {}).get(metric)
        if t and t["significant"]:
            marks += mark if t["delta"] > 0 else "⁻" + mark
    return f"{value:.4f}{marks}"


def markdown_table(report: dict, task: str) -> str:
    table = report["systems" if task == "retrieval" else "task1"]
    metrics = list(report["metrics"]) if task == "retrieval" else list(report["task1_metrics"])
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for s in ordered(table):
        lines.append(f"| {s} | " + " | ".join(_cell(report, task, s, m) for m in metrics) + " |")
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    """The human report: both task tables, significance legend, teacher MSE, absent systems, timings."""
    d = report["definitions"]
    sig = report["significance"]
    test = "paired two-sided t-test" if sig["test"] == "student" else "Fisher randomization test"
    out = [
        f"# Evaluation — split `{report['split']}`, {report['n_queries']} queries",
        "",
        f"Data: `{report['data']['source']}` ({report['data']['judged_pairs']:,} judged pairs). "
        f"nDCG: {d['ndcg']}. Recall/MRR/MAP count labels {', '.join(d['relevant_for_binary_metrics'])} as relevant.",
        f"Marks: ᵇ / ᵈ = significantly better than BM25 / the base student ({test}, p < {sig['max_p']}); "
        "⁻ᵇ / ⁻ᵈ = significantly worse.",
        "",
    ]
    out += _served_markdown(report)
    if report.get("findings"):
        out += ["## Findings", ""] + [f"- {f}" for f in report["findings"]] + [""]
    out += [
        f"## Full-catalog retrieval ({d['retrieval']})",
        "",
        markdown_table(report, "retrieval"),
        "",
        f"## ESCI Task 1 — {d['task1']}",
        "",
        markdown_table(report, "task1"),
        "",
    ]
    if report.get("teacher_mse"):
        t = report["teacher_mse"]
        by = ", ".join(f"{k} {v:.3f}" for k, v in t["mean_score_by_label"].items())
        out += [f"Teacher MSE vs soft labels: **{t['mse']:.4f}** on {t['pairs']:,} pairs (mean teacher score by label: {by}).", ""]
    out += students_markdown(report)
    out += calibration_markdown(report)
    if report["absent"]:
        out += ["## Absent systems", ""] + [f"- `{s}`: {why}" for s, why in report["absent"].items()] + [""]
    rows = []
    for base in ("bm25", "dense-base"):
        for system, metrics in sig["retrieval"].get(base, {}).items():
            t = metrics[list(report["metrics"])[0]]
            rows.append(f"| {system} | {base} | {t['delta']:+.4f} | {t['p_value']:.3g} |")
    if rows:
        first = list(report["metrics"])[0]
        out += [f"## Paired tests, {first}, full-catalog retrieval", "", "| system | vs | Δ | p |", "|---|---|---:|---:|"] + rows + [""]
    out += ["Plots: `eval/metrics.png`, `eval/ndcg_delta.png`. TREC runs: `eval/*.trec`.", "",
            "Timings (s): " + ", ".join(f"{k} {v}" for k, v in report["timings_s"].items()), ""]
    return "\n".join(out)


def students_markdown(report: dict) -> list[str]:
    """What each trained student saw: its labels, the labelled pairs and train queries offered, steps and rows drawn."""
    students = (report.get("details") or {}).get("students") or {}
    rows = [f"| {system} | {t['labels']} | {t['pairs']:,} | {t['queries']:,} | {t['steps']:,} | {t['rows_seen']:,} |"
            for system, s in students.items() if (t := s.get("trained"))]
    if not rows:
        return []
    return ["## Students: what each one trained on", "",
            "| student | labels | labelled pairs offered | train queries | steps | rows seen (steps × batch) |",
            "|---|---|---:|---:|---:|---:|", *rows, ""]


def calibration_markdown(report: dict) -> list[str]:
    """The calibration table: ECE (10 bins) and Brier of P(Exact) and P(E or S) per calibrated model on this split."""
    cal = report.get("calibration")
    if not cal:
        return []
    rows = []
    for system, b in cal.items():
        e, es, fit = b["p_exact"], b["p_exact_or_substitute"], b["fitted"]
        raw = f" (raw {e['raw_ece']:.4f})" if "raw_ece" in e else ""
        who = f"{system} (served student)" if b.get("served_student") else system
        rows.append(f"| {who} | {_ece(e)}{raw} | {e['brier']:.4f} | {_ece(es)} | {es['brier']:.4f} | {b['pairs']:,} | "
                    f"{fit['methods']['p_exact']} on {fitted_text(fit, 'p_exact')} / "
                    f"{fit['methods']['p_exact_or_substitute']} on {fitted_text(fit, 'p_exact_or_substitute')} |")
    tasks = [f"| {s} | {b['esci_tasks']['task2_micro_f1']:.4f} | {b['esci_tasks']['task3_micro_f1']:.4f} | "
             f"{b['esci_tasks']['task3_substitute_f1']:.4f} |" for s, b in cal.items() if b.get("esci_tasks")]
    interval = next((b["interval"] for b in cal.values() if b.get("interval")), None)
    spread = (f" In brackets, its {interval['level']:.0%} interval: a {interval['method']} over the split's "
              f"{interval['queries']:,} queries ({interval['resamples']:,} resamples), so compare models and thresholds on "
              "it, not on the third decimal." if interval else "")
    return [f"## Calibration — judged pairs of `{report['split']}`", "",
            "Probabilities fitted on dev (`calibration.json` beside each model); expected calibration error over 10 "
            f"equal-width bins.{spread} Reliability diagram: `eval/reliability.png`.", "",
            "| model | ECE P(Exact) | Brier P(Exact) | ECE P(E or S) | Brier P(E or S) | pairs | fitted (E / E or S) |",
            "|---|---:|---:|---:|---:|---:|---|"] + rows + [
            "", "ESCI Task 2 / Task 3 from the calibrated probabilities (most probable of E, S, C-or-I; no class head):", "",
            "| model | Task 2 micro-F1 | Task 3 micro-F1 | Substitute F1 |", "|---|---:|---:|---:|"] + tasks + [""]


def _ece(row: dict) -> str:
    """ECE to 4 places, with its interval (``ece_ci``) when the report has one."""
    ci = row.get("ece_ci")
    return f"{row['ece']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{row['ece']:.4f}"


def _served_markdown(report: dict) -> list[str]:
    """The headline: the served configuration on this split, and the dev comparison that chose it."""
    served, dev = report.get("served"), report.get("dev")
    if not served or not served.get("metrics"):
        return []
    metric = list(report["metrics"])[0]
    chosen = served["dev"] or {}
    out = ["## Served configuration (chosen on dev)", "",
           f"**{served['name']}**: {metric} **{served['metrics'][metric]:.4f}** on {served['split']} "
           f"({report['n_queries']} queries); dev {metric} {chosen.get(metric, float('nan')):.4f} on "
           f"{chosen.get('queries', '?')} dev queries. Rule: {chosen.get('rule', 'given (serving.json)')}.", ""]
    if served.get("below_best_part"):
        out += [f"Note: {served['below_best_part']}.", ""]
    if dev:
        out += [f"Dev comparison ({dev['n_queries']} queries; rerank on {dev.get('rerank_queries') or '-'}):", "",
                f"| configuration | dev {metric} | queries |", "|---|---:|---:|"]
        out += [f"| {'**' + n + '**' if n == dev['chosen'] else n}{' (another student: not a candidate)' if m.get('not_served') else ''}"
                f"{' (' + m['note'] + ')' if m.get('note') else ''} "
                f"| {m[metric]:.4f} | {m['queries']} |" for n, m in dev["systems"].items()]
        out += [""] + [f"- {line}" for line in dev["decisions"]] + [""]
    return out


def write_trec_runs(eval_dir: Path, runs: dict[str, dict[str, dict[str, dict[str, float]]]], query_ids: list[str]) -> list[str]:
    """One TREC run file per task and system (``<task>.<system>.trec``), ranks by score."""
    written = []
    for task, systems in runs.items():
        for system, run in systems.items():
            final = eval_dir / f"{task}.{safe_name(system)}.trec"
            with atomic_path(final) as tmp:
                to_run(run, safe_name(system), query_ids).save(str(tmp), kind="trec")
            written.append(final.name)
    return written


def own_data_path(run: RunDir) -> Path | None:
    """The data the run was built on (its data check, else its index), or None when it records none."""
    for sub in (run.data, run.index):
        path = sub / MANIFEST
        if path.is_file():
            d = read_json(path).get("data")
            if isinstance(d, dict) and d.get("path"):
                return Path(d["path"]).resolve()
    return None


def other_data_dir(run: RunDir, data_path: str | Path, split: str) -> Path | None:
    """Where an eval of ``data_path`` goes when it is not the run's own data: ``eval/other/<data>-<split>/``."""
    own = own_data_path(run)
    if own is None or Path(data_path).resolve() == own:
        return None
    return run.other_eval(data_path, split)


def write_report(run: RunDir, report: dict[str, Any], out_dir: Path | None = None, stage: Path | None = None, *,
                 runtime: Runtime | None = None) -> dict[str, Any]:
    """Write TREC runs, plots, report.json, report.md and eval/manifest.json (last). Returns the JSON written.

    ``out_dir``: write all of it there instead (an eval on other data), leaving the run's own report alone.
    ``stage``: a ``staged_commit`` folder of that root to write into (the report still names the final paths).
    ``runtime``: how the students and the teacher ran (recorded in the report's provenance).
    """
    report = dict(report)
    runs = report.pop("_runs")
    root = out_dir or run.root
    report_json, report_md = (out_dir / REPORT_JSON, out_dir / REPORT_MD) if out_dir else (run.report_json, run.report_md)
    at = (lambda p: stage / Path(p).relative_to(root)) if stage is not None else Path
    eval_dir = at(out_dir or run.eval)
    eval_dir.mkdir(parents=True, exist_ok=True)
    files = write_trec_runs(eval_dir, runs, list(next(iter(report["per_query_ndcg"]["retrieval"].values())).keys())
                            if report["per_query_ndcg"]["retrieval"] else [])
    files.append(plot_metric_bars(report, eval_dir / "metrics.png").name)
    delta = plot_ndcg_deltas(report, eval_dir / "ndcg_delta.png")
    if delta is not None:
        files.append(delta.name)
    if report.get("calibration"):
        files.append(plot_reliability(report, eval_dir / "reliability.png").name)
    report["files"] = {"trec_and_plots": files, "report_json": str(report_json), "report_md": str(report_md)}
    report["findings"] = findings(report)
    report.setdefault("provenance", provenance(runtime=runtime))  # command, commit and CPU, for the pages `reldistill report` renders
    write_json(at(report_json), report)
    write_text(at(report_md), render_markdown(report))
    write_manifest(eval_dir, "eval", split=report["split"], n_queries=report["n_queries"],
                   systems=sorted(report["systems"]), task1=sorted(report["task1"]), absent=report["absent"],
                   data=report["data"], files=files)
    return report
