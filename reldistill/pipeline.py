"""The whole pipeline on one recipe, into one run directory, resumable stage by stage.

data check → teacher train → candidate mining → teacher scoring → student distillation (+ the
human-labels-only student) → index build → eval on the test split → report. Each stage is finished
when its artifact's manifest exists; a rerun after Ctrl-C or kill skips finished stages, and the
stages themselves resume (teacher checkpoints, scoring shards, student checkpoints).

``budget_minutes`` steers the CPU-sized stages: the teacher's training time and the number of
unlabeled queries the teacher labels scale with it (the recipe's values are for the default budget).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from reldistill.artifacts import MANIFEST, RunDir, read_manifest, write_manifest
from reldistill.config import DataConfig, from_dict, load_yaml
from reldistill.errors import UserError
from reldistill.progress import console
from reldistill.stages import Stage, run_stages

DEFAULT_BUDGET_MINUTES = 18.0  # what configs/demo-cpu.yaml is sized for (pipeline work, not set-up)
TEACHER_SHARE = 0.35  # of the budget, for teacher training


@dataclasses.dataclass
class Pipeline:
    config: Path
    run_root: Path
    budget_minutes: float = DEFAULT_BUDGET_MINUTES
    data_path: str | None = None
    train_teacher: bool = False  # train the teacher here even when the recipe ships a bundled one

    def __post_init__(self) -> None:
        if self.budget_minutes < 3:
            raise UserError(f"--budget-minutes must be at least 3, got {self.budget_minutes:g}.")
        self.recipe = load_yaml(self.config)
        self.data_cfg = from_dict(DataConfig, self.recipe.get("data"), f"{self.config}:data")
        if self.data_path:
            self.data_cfg.path = self.data_path
        self.run = RunDir(self.run_root, create=True)
        self.scale = self.budget_minutes / DEFAULT_BUDGET_MINUTES

    # -- stages ----------------------------------------------------------------------------------
    def data_stage(self) -> str:
        from reldistill.data import data_stats, load_esci

        stats = data_stats(load_esci(self.data_cfg))
        out = self.run.root / "data"
        write_manifest(out, "data-check", data=dataclasses.asdict(self.data_cfg), stats=stats)
        s = stats["splits"]
        return (f"{stats['pairs']:,} pairs, {stats['queries']:,} queries, {stats['products']:,} products; "
                + ", ".join(f"{k} {v['queries']} queries" for k, v in s.items()))

    def teacher_stage(self, force: bool) -> str:
        from reldistill.teacher.train import train_teacher

        bundled = self.recipe.get("train", {}).get("bundled")
        if bundled and not self.train_teacher:
            from reldistill.teacher.bundle import bundle_dir, bundle_matches, install_bundle

            src = bundle_dir(bundled)
            ok, why = bundle_matches(src, self.data_cfg.path)
            if ok:
                info = install_bundle(src, self.run.teacher)
                console.print(f"[bold]teacher:[/] reusing the BUNDLED teacher {src} (trained once with `{info['command']}` "
                              f"at commit {str(info.get('commit'))[:10]}, not on this machine); `--train-teacher` trains one here", highlight=False)
                return "bundled teacher (not trained here); " + _teacher_summary(read_manifest(self.run.teacher))
            console.print(f"teacher: {why} — training one here", highlight=False)
        minutes = float(self.recipe.get("train", {}).get("max_minutes") or 0) * self.scale or TEACHER_SHARE * self.budget_minutes
        train_teacher(self.config, self.run.teacher, resume=not force, max_minutes=minutes, data_path=self.data_path)
        m = read_manifest(self.run.teacher)
        return _teacher_summary(m)

    def _distill_cfg(self):
        from reldistill.distill.config import load_distill_config

        cfg, _ = load_distill_config(self.config)
        if cfg.max_unlabeled_queries is not None:
            cfg = dataclasses.replace(cfg, max_unlabeled_queries=max(0, round(cfg.max_unlabeled_queries * self.scale)))
        return cfg

    def candidates_stage(self) -> str:
        from reldistill.artifacts import write_parquet
        from reldistill.data import load_esci
        from reldistill.distill.mine import mine_candidates

        cfg = self._distill_cfg()
        cands = mine_candidates(load_esci(self.data_cfg), cfg, dev_fraction=self.data_cfg.dev_fraction, seed=self.data_cfg.seed)
        write_parquet(self.run.scores / "candidates.parquet", cands)
        by = cands["source"].value_counts().to_dict()
        return f"{len(cands):,} pairs over {cands['query_id'].nunique():,} train queries ({', '.join(f'{k} {v:,}' for k, v in by.items())})"

    def scores_stage(self) -> str:
        import pandas as pd

        from reldistill.distill.label import label_candidates

        score = self.recipe.get("score", {}) or {}
        out = label_candidates(self.run.scores / "candidates.parquet", self.run.teacher, self.run.scores / "scores.parquet",
                               self.data_cfg, batch_size=score.get("batch_size"), dtype=score.get("dtype", "auto"),
                               shard_size=score.get("shard_size", 512))
        df = pd.read_parquet(out, columns=["teacher_score"])
        write_manifest(self.run.scores, "scores", teacher=str(self.run.teacher), pairs=len(df),
                       candidates=str(self.run.scores / "candidates.parquet"), scores=str(out))
        return f"{len(df):,} pairs scored by the teacher (mean score {df['teacher_score'].mean():.3f})"

    def student_stage(self, human: bool, force: bool) -> str:
        from reldistill.distill.train import train_human_student, train_student

        cfg = self._distill_cfg()
        if human:
            out = train_human_student(self.run.root / "student-human", cfg, self.data_cfg, resume=not force)
        else:
            out = train_student(self.run.scores / "scores.parquet", self.run.student, cfg, self.data_cfg,
                                teacher_dir=self.run.teacher, resume=not force)
        return _student_summary(read_manifest(out))

    def index_stage(self) -> str:
        from reldistill.retrieval.build import build_index

        idx = build_index(self.run.root, student_path=str(self.run.student), data_cfg=self.data_cfg)
        m = read_manifest(idx)
        return f"{m.get('count', '?'):,} products, dim {m.get('dim', '?')}, {m.get('index_kind', 'flat')} FAISS + BM25"

    def eval_stage(self) -> str:
        from reldistill.eval.compare import Evaluation
        from reldistill.eval.config import EvalConfig, load_section
        from reldistill.eval.report import write_report

        cfg = load_section(self.config, "eval", EvalConfig)
        report = write_report(self.run, Evaluation(self.run.root, self.data_cfg, cfg).run_all())
        sysm = report["systems"]
        key = next((k for k in next(iter(sysm.values()), {}) if k.lower().startswith("ndcg@10")), None)
        if key is None:
            return f"{len(sysm)} systems evaluated on {report['n_queries']} {report['split']} queries"
        best = max(sysm, key=lambda s: sysm[s][key])
        return f"{len(sysm)} systems on {report['n_queries']} {report['split']} queries; best {key} {sysm[best][key]:.4f} ({best})"

    # -- driver ----------------------------------------------------------------------------------
    def stages(self, force: bool) -> list[Stage]:
        run = self.run
        return [
            Stage("data", "data check", lambda: run.done("data"), self.data_stage),
            Stage("teacher", "teacher training (LoRA cross-encoder)", lambda: run.done("teacher"), lambda: self.teacher_stage(force)),
            Stage("candidates", "candidate mining", lambda: (run.scores / "candidates.parquet").is_file(), self.candidates_stage),
            Stage("scores", "teacher scoring of candidates", lambda: run.done("scores"), self.scores_stage),
            Stage("student", "student distillation", lambda: run.done("student"), lambda: self.student_stage(False, force)),
            Stage("student-human", "human-labels-only student", lambda: (run.root / "student-human" / MANIFEST).is_file(),
                  lambda: self.student_stage(True, force)),
            Stage("index", "index build (FAISS + BM25)", lambda: run.done("index"), self.index_stage),
            Stage("eval", "evaluation on the test split", lambda: run.done("eval") and run.report_json.is_file(), self.eval_stage),
        ]

    def run_all(self, force: bool = False) -> dict[str, Any]:
        if force:
            for name in ("data", "scores", "index", "eval"):
                shutil.rmtree(self.run.root / name, ignore_errors=True)
        return run_stages(self.run.root, self.stages(force), force=force)


def _teacher_summary(m: dict[str, Any]) -> str:
    """'N steps; dev MSE a → b, nDCG@10 c → d' (untrained → trained) from the teacher manifest."""
    parts = [f"{m.get('steps', '?')} steps ({m.get('epochs_done', 0):.2f} epochs, {m.get('precision', '?')})"]
    before, after = m.get("dev_metrics_untrained") or {}, m.get("dev_metrics") or {}
    for key, label in (("mse", "dev MSE"), ("ndcg@10", "dev nDCG@10")):
        if key in after:
            parts.append(f"{label} {before.get(key, float('nan')):.4f} → {after[key]:.4f}")
    return "; ".join(parts)


def _student_summary(m: dict[str, Any]) -> str:
    best = m.get("best") or m.get("dev") or {}
    if isinstance(best, dict) and best:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in best.items() if isinstance(v, (int, float)))
        return f"{m.get('loss', '')}; dev {shown}"
    return str(m.get("loss", "student trained"))
