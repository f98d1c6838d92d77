"""PNG plots of an evaluation: metric bars per system, per-query nDCG deltas (distilled vs base), reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reldistill.artifacts import atomic_path
from reldistill.eval.order import ordered, system_color


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as PNG atomically and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_metric_bars(report: dict, path: Path) -> Path:
    """Grouped bars: one group per metric, one bar per system; full-catalog (left) and Task 1 (right)."""
    plt = _pyplot()
    panels = [("Full-catalog retrieval", report["systems"], list(report["metrics"])),
              ("ESCI Task 1 (judged candidates)", report["task1"], list(report["task1_metrics"]))]
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.8), sharey=True, gridspec_kw={"width_ratios": [4, 3]})
    cmap = plt.get_cmap("tab10")
    for ax, (title, table, metrics) in zip(axes, panels):
        systems = ordered(table)
        width = 0.8 / max(len(systems), 1)
        x = np.arange(len(metrics))
        for i, s in enumerate(systems):
            vals = [table[s][m] for m in metrics]
            bars = ax.bar(x + (i - (len(systems) - 1) / 2) * width, vals, width, label=s, color=cmap(system_color(s) % 10))
            if len(systems) <= 8:
                ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        ax.set_xticks(x, metrics)
        ax.set_title(f"{title} — {report['n_queries']} {report['split']} queries")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, frameon=False)
    axes[0].set_ylabel("score (mean over queries)")
    return _save(plt, fig, path)


def plot_ndcg_deltas(report: dict, path: Path, treatment: str = "dense-distilled", control: str = "dense-base") -> Path | None:
    """Sorted per-query nDCG differences ``treatment − control`` on full-catalog retrieval.

    Falls back to the human-labels-only student when there is no distilled one; None when either is absent.
    """
    per = report["per_query_ndcg"]["retrieval"]
    if treatment not in per and "dense-human" in per:
        treatment = "dense-human"
    if treatment not in per or control not in per:
        return None
    plt = _pyplot()
    qids = list(per[control])
    delta = np.array([per[treatment][q] - per[control][q] for q in qids])
    order = np.argsort(delta)
    metric = list(report["metrics"])[0]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colors = ["#2b8a3e" if d > 0 else "#c92a2a" if d < 0 else "#868e96" for d in delta[order]]
    ax.bar(np.arange(len(delta)), delta[order], color=colors)
    ax.axhline(0, color="black", lw=0.8)
    wins, losses = int((delta > 0).sum()), int((delta < 0).sum())
    ax.set_title(f"Per-query {metric}: {treatment} − {control} (full catalog) — "
                 f"{wins} better, {losses} worse, {len(delta) - wins - losses} tied; mean Δ {delta.mean():+.4f}")
    ax.set_xlabel("queries, sorted by Δ")
    ax.set_ylabel(f"Δ {metric}")
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def plot_reliability(report: dict, path: Path) -> Path:
    """Reliability diagram: observed rate against mean predicted probability per bin, P(Exact) (left) and
    P(Exact or Substitute) (right), one line per calibrated model, marker area by pair count."""
    plt = _pyplot()
    cal = report["calibration"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharey=True)
    cmap = plt.get_cmap("tab10")
    for ax, (target, title) in zip(axes, (("p_exact", "P(Exact)"), ("p_exact_or_substitute", "P(Exact or Substitute)"))):
        ax.plot([0, 1], [0, 1], color="#868e96", lw=0.8, ls="--", label="perfect")
        for i, (system, b) in enumerate(cal.items()):
            rows = b[target]["reliability"]
            x, y = [r["mean_p"] for r in rows], [r["rate"] for r in rows]
            sizes = [max(8.0, 300.0 * r["count"] / max(b["pairs"], 1)) for r in rows]
            ax.plot(x, y, color=cmap(i % 10), lw=1.2, label=f"{system} (ECE {b[target]['ece']:.3f})")
            ax.scatter(x, y, s=sizes, color=cmap(i % 10), alpha=0.7)
        ax.set_title(f"{title} — {report['split']} judged pairs")
        ax.set_xlabel("mean predicted probability (10 bins)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("observed rate")
    return _save(plt, fig, path)
