"""The whole pipeline on one recipe, into one run directory, resumable stage by stage.

data check → teacher train → candidate mining → teacher scoring → student distillation (+ the
human-labels-only student) → index build → eval on the test split → report. Each stage is finished
when its artifact's manifest exists; a rerun after Ctrl-C or kill skips finished stages, and the
stages themselves resume (teacher checkpoints, scoring shards, student checkpoints). Each stage
records a digest of its inputs (its recipe sections, the data's fingerprint, the manifests of the
stages it reads); a finished stage whose inputs changed is redone, and with it everything downstream.

A recipe with a ``demo:`` section is sized from the speed measured on this machine at start-up
(reldistill.workflow.sizing): the teacher's training minutes, the unlabeled queries it labels, each
student's steps and the dev rerank queries fit ``demo.target_minutes`` (``budget_minutes`` overrides it);
the measured speeds and the sizes go to pipeline.json (``sizing``) and are reused when the run resumes.
Without ``demo:``, ``budget_minutes`` scales the teacher's minutes and the unlabeled queries from the
recipe's values (which are for the default budget).

The workflow is the composition root: the runtime settings (reldistill.settings) are resolved once, from the recipe's
``student:`` section and the environment, unless the caller passes them, and handed to every stage.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import pandas as pd

from reldistill.artifacts import MANIFEST, data_fingerprint, file_fingerprint, read_json, read_manifest, write_json
from reldistill.data import check_data, load_esci
from reldistill.distill.label import label_candidates
from reldistill.distill.mine import mine_to
from reldistill.distill.train import train_human_student, train_student, training_summary
from reldistill.eval import evaluate_run
from reldistill.progress import console
from reldistill.retrieval.build import build_index
from reldistill.workflow.demo_inputs import demo_recipe
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime
from reldistill.teacher import train as teacher_train
from reldistill.teacher.bundle import bundle_dir, bundle_matches, install_bundle
from reldistill.teacher.int8 import cpu_key
from reldistill.workflow import sizing as sz
from reldistill.workflow.calibrate import calibrate_run
from reldistill.workflow.stages import STATE_FILE, Stage, input_digests, run_stages

DEFAULT_BUDGET_MINUTES = 18.0  # what configs/demo-cpu.yaml is sized for (pipeline work, not set-up)
TEACHER_SHARE = 0.35  # of the budget, for teacher training
# distill.* fields candidate mining reads (the others only change the student's training)
MINING_FIELDS = ("student", "bm25_depth", "dense_depth", "unlabeled_depth", "min_judged", "max_unlabeled_queries", "max_judged_queries",
                 "queries_path", "drop_near_duplicates", "near_duplicate_threshold", "max_seq_length")


@dataclasses.dataclass
class Pipeline:
    config: Path
    run_root: Path
    budget_minutes: float | None = None  # default: demo.target_minutes, else DEFAULT_BUDGET_MINUTES
    data_path: str | None = None
    train_teacher: bool = False  # train the teacher here even when the recipe ships a bundled one
    runtime: Runtime | None = None  # default: resolved from the recipe's student: section and the environment

    def __post_init__(self) -> None:
        self.recipe = demo_recipe(self.config, self.budget_minutes, self.data_path)
        self.runtime = self.runtime or Runtime.from_env(student=self.recipe.student)  # for every stage of the run
        self.data_cfg = self.recipe.data
        self.run = RunDir(self.run_root, create=True)
        self.demo = self.recipe.demo
        if self.demo is not None:
            if self.budget_minutes is not None:
                self.demo = dataclasses.replace(self.demo, target_minutes=float(self.budget_minutes))
        self.budget_minutes = self.budget_minutes if self.budget_minutes is not None else DEFAULT_BUDGET_MINUTES
        self.scale = 1.0 if self.demo is not None else self.budget_minutes / DEFAULT_BUDGET_MINUTES

    # -- sizing from measured speed (recipes with demo:) ------------------------------------------
    def _sizing_key(self) -> str:
        sections = {k: dataclasses.asdict(getattr(self.recipe, k)) for k in ("teacher", "train", "score", "distill", "eval", "search", "student")}
        return input_digests({"k": [dataclasses.asdict(self.demo), sections, self.data_inputs, cpu_key(self.runtime),
                                   self.bundle is not None]})["k"]

    @functools.cached_property
    def bundle(self) -> Path | None:
        """The recipe's bundled teacher when the demo will reuse it (same data and dev carve, no ``--train-teacher``)."""
        if not self.recipe.train.bundled or self.train_teacher:
            return None
        src = bundle_dir(self.recipe.train.bundled)
        ok, why = bundle_matches(src, self.data_cfg)
        if not ok:
            console.print(f"teacher: {why} — training one here", highlight=False)
        return src if ok else None

    @functools.cached_property
    def sizing(self) -> dict[str, Any] | None:
        """The measured speeds and chosen sizes (demo: recipes): from pipeline.json when the same recipe, data and CPU
        were sized before (so a resumed run keeps its stage inputs), else measured now and recorded there."""
        if self.demo is None:
            return None
        state_file = self.run.root / STATE_FILE
        state = read_json(state_file) if state_file.is_file() else {"stages": {}}
        key = self._sizing_key()
        old = state.get("sizing")
        if isinstance(old, dict) and old.get("key") == key:
            console.print(f"[bold]sizing[/] (measured {old['measured_at']}, reused):\n{old['text']}", highlight=False)
            return old
        console.rule("[bold]sizing the stages from this machine's speed")
        data = load_esci(self.data_cfg)
        dcfg = self.recipe.distill
        work = sz.work_of(data, self.data_cfg, dcfg, self.recipe.eval, self.recipe.search,
                          int8_check=self.recipe.student.int8 == "auto")
        speeds = sz.measure(self.recipe, dcfg, data, self.demo, runtime=self.runtime)
        demo = self.demo if self.bundle is None else dataclasses.replace(self.demo, min_teacher_minutes=0.0, max_teacher_minutes=0.0)
        p = sz.plan(demo, speeds, work, spent_s=speeds.detail.get("probe_s", 0.0))
        rec = {"key": key, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **p,
               "speeds": {"teacher_pairs_per_s": round(speeds.teacher_pairs_per_s, 2),
                          "student_steps_per_s": round(speeds.student_steps_per_s, 3),
                          "student_docs_per_s": round(speeds.student_docs_per_s, 1),
                          "backend_docs_per_s": round(speeds.backend_docs_per_s or speeds.student_docs_per_s, 1), **speeds.detail},
               "work": dataclasses.asdict(work), "demo": dataclasses.asdict(self.demo), "text": sz.describe(p, speeds)}
        state["sizing"] = rec
        write_json(state_file, state)
        console.print(rec["text"], highlight=False)
        return rec

    # -- stage inputs (what each artifact is made from) --------------------------------------------
    @functools.cached_property
    def data_inputs(self) -> dict[str, Any]:
        p = Path(self.data_cfg.path)
        files = data_fingerprint(p) if p.exists() else {}
        extra = Path(self.data_cfg.products_path) if self.data_cfg.products_path else None
        if extra is not None and extra.exists():
            files = {**files, **{f"products:{k}": v for k, v in data_fingerprint(extra).items()}}
        # by content: the same files under another path (a moved checkout) are the same input
        return {"data": {k: v for k, v in dataclasses.asdict(self.data_cfg).items() if k not in ("path", "products_path")},
                "data_files": files}

    def _manifest_digest(self, stage: str) -> str | None:
        m = self.run.stage_dir(stage) / MANIFEST
        return file_fingerprint(m) if m.is_file() else None

    def _teacher_minutes(self) -> float:
        if self.sizing is not None:
            return float(self.sizing["sizes"]["teacher_minutes"])
        return float(self.recipe.train.max_minutes or 0) * self.scale or TEACHER_SHARE * self.budget_minutes

    def stage_inputs(self, name: str) -> dict[str, Any]:
        """The inputs of stage ``name`` whose digests decide whether its finished artifact is still valid."""
        r = self.recipe
        if name == "data":
            return self.data_inputs
        if name == "teacher":
            return {**self.data_inputs, "teacher": dataclasses.asdict(r.teacher), "train": dataclasses.asdict(r.train),
                    "minutes": self._teacher_minutes(),
                    "bundle": file_fingerprint(self.bundle / MANIFEST) if self.bundle is not None else None}
        cfg = dataclasses.asdict(self._distill_cfg())
        if name == "candidates":
            q = cfg["queries_path"]
            return {**self.data_inputs, "distill (mining)": {k: cfg[k] for k in MINING_FIELDS},
                    "queries_file": file_fingerprint(q) if q and Path(q).is_file() else None}
        if name == "scores":
            cands = self.run.candidates_file
            return {**self.data_inputs, "score": dataclasses.asdict(r.score), "teacher manifest": self._manifest_digest("teacher"),
                    "candidates": file_fingerprint(cands) if cands.is_file() else None}
        if name == "student":
            return {**self.data_inputs, "distill": cfg, "scores manifest": self._manifest_digest("scores"),
                    "teacher manifest": self._manifest_digest("teacher")}
        if name == "student-human":
            return {**self.data_inputs, "distill": cfg}
        if name == "index":
            return {**self.data_inputs, "index": dataclasses.asdict(r.index), "student": dataclasses.asdict(r.student),
                    "student manifest": self._manifest_digest("student")}
        if name == "eval":
            return {**self.data_inputs, "eval": dataclasses.asdict(self._eval_cfg()), "student": dataclasses.asdict(r.student),
                    "search": dataclasses.asdict(r.search),  # eval runs the served pipeline under search:
                    **{f"{s} manifest": self._manifest_digest(s) for s in ("teacher", "student", "student-human", "index")}}
        raise KeyError(name)

    # -- stages ----------------------------------------------------------------------------------
    def data_stage(self) -> str:
        stats = check_data(self.data_cfg, self.run.data)["stats"]
        s = stats["splits"]
        return (f"{stats['pairs']:,} pairs, {stats['queries']:,} queries, {stats['products']:,} products; "
                + ", ".join(f"{k} {v['queries']} queries" for k, v in s.items()))

    def teacher_stage(self, force: bool) -> str:
        if self.bundle is not None:
            info = install_bundle(self.bundle, self.run.teacher)
            console.print(f"[bold]teacher:[/] reusing the BUNDLED teacher {self.bundle} (trained once with `{info['command']}` "
                          f"at commit {str(info.get('commit'))[:10]}, not on this machine); `--train-teacher` trains one here", highlight=False)
            return "bundled teacher (not trained here); " + _teacher_summary(read_manifest(self.run.teacher))
        teacher_train.train_teacher(self.recipe, self.run.teacher, resume=not force, max_minutes=self._teacher_minutes(),
                                    runtime=self.runtime)
        m = read_manifest(self.run.teacher)
        return _teacher_summary(m)

    def _distill_cfg(self):
        cfg = self.recipe.distill
        if self.sizing is not None:
            z = self.sizing["sizes"]
            return dataclasses.replace(cfg, max_unlabeled_queries=z["unlabeled_queries"], max_steps=z["student_steps"],
                                       max_judged_queries=z.get("judged_queries", cfg.max_judged_queries))
        if cfg.max_unlabeled_queries is not None:
            cfg = dataclasses.replace(cfg, max_unlabeled_queries=max(0, round(cfg.max_unlabeled_queries * self.scale)))
        return cfg

    def _eval_cfg(self):
        cfg = self.recipe.eval
        if self.sizing is not None:
            cfg = dataclasses.replace(cfg, dev_rerank_queries=self.sizing["sizes"]["dev_rerank_queries"])
        return cfg

    def candidates_stage(self) -> str:
        m = mine_to(self.run.candidates, self._distill_cfg(), self.data_cfg, runtime=self.runtime,
                    catalog_cache=self.run.eval_cache)  # eval's base student reuses the catalog encode
        by = m["by_source"]
        return f"{m['pairs']:,} pairs over {m['queries']:,} train queries ({', '.join(f'{k} {v:,}' for k, v in by.items())})"

    def scores_stage(self) -> str:
        out = label_candidates(self.run.candidates_file, self.run.teacher, self.run.scores_file, self.data_cfg, self.recipe.score,
                               runtime=self.runtime)
        df = pd.read_parquet(out, columns=["teacher_score"])
        int8 = read_manifest(self.run.scores).get("teacher_int8")  # the gate's verdict, measured when the teacher loaded
        how = "" if int8 is None else f"; int8 {'kept' if int8['kept'] else 'not kept'}: {int8['reason']}"
        return f"{len(df):,} pairs scored by the teacher (mean score {df['teacher_score'].mean():.3f}{how})"

    def student_stage(self, human: bool, force: bool) -> str:
        cfg = self._distill_cfg()
        if human:
            out = train_human_student(self.run.student_human, cfg, self.data_cfg, resume=not force, runtime=self.runtime)
        else:
            out = train_student(self.run.scores_file, self.run.student, cfg, self.data_cfg,
                                teacher_dir=self.run.teacher, resume=not force, runtime=self.runtime)
        return _student_summary(read_manifest(out))

    def index_stage(self) -> str:
        icfg = self.recipe.index  # kind, HNSW/IVF-PQ knobs
        idx = build_index(self.run.root, student_path=str(self.run.student), data_cfg=self.data_cfg, kind=icfg.kind, config=icfg,
                          runtime=self.runtime)
        m = read_manifest(idx)
        return f"{m.get('count', '?'):,} products, dim {m.get('dim', '?')}, {m.get('index_kind', 'flat')} FAISS + BM25"

    def eval_stage(self) -> str:
        calibrate_run(self.run, self.data_cfg, self.recipe.eval.teacher_dtype, self.recipe.eval.teacher_batch,
                      runtime=self.runtime)  # fitted on dev, or kept
        report = evaluate_run(self.run, self.data_cfg, self._eval_cfg(), self.recipe.search, self.recipe.index,
                              runtime=self.runtime)
        sysm = report["systems"]
        served = report.get("served")
        if served and served.get("metrics"):
            key = next(iter(served["metrics"]))
            return (f"{len(sysm)} systems on {report['n_queries']} {report['split']} queries; served (chosen on dev) "
                    f"{served['name']}: {key} {served['metrics'][key]:.4f}")
        key = next((k for k in next(iter(sysm.values()), {}) if k.lower().startswith("ndcg@10")), None)
        if key is None:
            return f"{len(sysm)} systems evaluated on {report['n_queries']} {report['split']} queries"
        best = max(sysm, key=lambda s: sysm[s][key])
        return f"{len(sysm)} systems on {report['n_queries']} {report['split']} queries; best {key} {sysm[best][key]:.4f} ({best})"

    # -- driver ----------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        run = self.run

        def stage(name: str, title: str, is_done, work) -> Stage:
            return Stage(name, title, is_done, work, lambda: self.stage_inputs(name))

        return [
            stage("data", "data check", lambda: run.done("data"), lambda fresh: self.data_stage()),
            stage("teacher", "teacher training (LoRA cross-encoder)", lambda: run.done("teacher"), self.teacher_stage),
            stage("candidates", "candidate mining", lambda: run.done("candidates"),
                  lambda fresh: self.candidates_stage()),
            stage("scores", "teacher scoring of candidates", lambda: run.done("scores"), lambda fresh: self.scores_stage()),
            stage("student", "student distillation", lambda: run.done("student"), lambda fresh: self.student_stage(False, fresh)),
            stage("student-human", "human-labels-only student", lambda: run.done("student-human"),
                  lambda fresh: self.student_stage(True, fresh)),
            stage("index", "index build (FAISS + BM25)", lambda: run.done("index"), lambda fresh: self.index_stage()),
            stage("eval", "evaluation on the test split", lambda: run.done("eval") and run.report_json.is_file(),
                  lambda fresh: self.eval_stage()),
        ]

    def run_all(self, force: bool = False) -> dict[str, Any]:
        """Run (or reuse) every stage. ``force`` redoes each one into a fresh artifact swapped in when it
        is finished; nothing is deleted up front, so a Ctrl-C keeps the previous artifacts, and the
        stages not yet redone stay marked stale (their recorded inputs name the old upstream manifests)."""
        self.sizing  # noqa: B018 - measured (or reused) and printed before the first stage
        return run_stages(self.run.root, self.stages(), force=force)


def _teacher_summary(m: dict[str, Any]) -> str:
    """'N steps; dev MSE a → b, nDCG@10 c → d' (untrained → trained) from the teacher manifest."""
    parts = [f"{m.get('steps', '?')} steps ({m.get('epochs_done', 0):.2f} epochs, {m.get('precision', '?')})"]
    before, after = m.get("dev_metrics_untrained") or {}, m.get("dev_metrics") or {}
    for key, label in (("mse", "dev MSE"), ("ndcg@10", "dev nDCG@10")):
        if key in after:
            parts.append(f"{label} {before.get(key, float('nan')):.4f} → {after[key]:.4f}")
    prior = m.get("prior") or {}
    if prior:
        w = float(prior["weight"])
        kept = f"LLM weight {w:g} + {prior['student']} {1 - w:g}" if w < 1 else f"LLM alone (no {prior['student']} blend)"
        parts.append(f"prior: {kept}, dev nDCG@10 {prior['dev_ndcg10'][f'{w:g}']:.4f} on {prior['dev_queries']} queries")
    return "; ".join(parts)


def _student_summary(m: dict[str, Any]) -> str:
    best = m.get("best") or m.get("dev") or {}
    seen = training_summary(m)
    labelled = "" if seen is None or seen["labels"] != "teacher" else (
        f"; {seen['pairs']:,} teacher-labelled pairs of {seen['queries']:,} train queries, "
        f"{seen['rows_seen']:,} rows seen in {seen['steps']} steps")
    if isinstance(best, dict) and best:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in best.items() if isinstance(v, (int, float)))
        return f"{m.get('loss', '')}; dev {shown}{labelled}"
    return str(m.get("loss", "student trained")) + labelled
