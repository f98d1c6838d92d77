"""`reldistill distill mine | label | train | export | eval` (heavy imports inside the commands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

distill_app = typer.Typer(help="Distil teacher scores into a bi-encoder student: mine candidates, label them, train.",
                          no_args_is_help=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (distill/data sections).")]
RunOpt = Annotated[Path, typer.Option("--run", "-r", help="Run directory (teacher/, scores/, student/ ...).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="ESCI directory or table (overrides data.path).")]


def _configs(config: Optional[Path], data: Optional[Path], **overrides):
    from reldistill.distill.config import load_distill_config

    cfg, data_cfg = load_distill_config(config, overrides)
    if data is not None:
        data_cfg.path = str(data)
    return cfg, data_cfg


@distill_app.command("mine")
def mine_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    queries: Annotated[Optional[Path], typer.Option(help="Extra unlabeled queries (.txt one per line, or a table with 'query').")] = None,
) -> None:
    """Mine candidates for train queries (judged + BM25 + dense + unlabeled) → RUN/scores/candidates.parquet."""
    from reldistill.artifacts import RunDir, write_parquet
    from reldistill.data import load_esci
    from reldistill.distill.mine import mine_candidates

    cfg, data_cfg = _configs(config, data, queries_path=str(queries) if queries else None)
    rd = RunDir(run, create=True)
    cands = mine_candidates(load_esci(data_cfg), cfg, dev_fraction=data_cfg.dev_fraction, seed=data_cfg.seed)
    out = write_parquet(rd.scores / "candidates.parquet", cands)
    typer.echo(json.dumps({"candidates": str(out), "pairs": len(cands), "queries": int(cands["query_id"].nunique()),
                           "by_source": {k: int(v) for k, v in cands["source"].value_counts().items()}}, indent=2))


@distill_app.command("label")
def label_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", "-t", help="Teacher directory (default RUN/teacher).")] = None,
    candidates: Annotated[Optional[Path], typer.Option(help="Candidates parquet (default RUN/scores/candidates.parquet).")] = None,
    dtype: Annotated[str, typer.Option(help="fp32 | bf16 | auto.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(help="Pairs per teacher forward pass.")] = None,
) -> None:
    """Score every candidate with the teacher (resumable) → RUN/scores/scores.parquet + manifest."""
    import pandas as pd

    from reldistill.artifacts import RunDir, data_fingerprint, file_fingerprint, write_manifest
    from reldistill.config import require_int, to_dict
    from reldistill.distill.label import label_candidates

    if batch_size is not None:
        require_int(batch_size, "--batch-size")
    cfg, data_cfg = _configs(config, data)
    rd = RunDir(run)
    teacher_dir = teacher or rd.teacher
    cands = candidates or rd.scores / "candidates.parquet"
    if not Path(cands).is_file():
        from reldistill.errors import UserError

        raise UserError(f"candidates file {cands} does not exist — run `reldistill distill mine --run {run}` first.")
    out = label_candidates(cands, teacher_dir, rd.scores / "scores.parquet", data_cfg, batch_size=batch_size, dtype=dtype)
    df = pd.read_parquet(out)
    write_manifest(rd.scores, "scores", teacher=str(Path(teacher_dir).resolve()), candidates=str(Path(cands).resolve()),
                   candidates_sha256=file_fingerprint(cands), pairs=len(df), queries=int(df["query"].nunique()),
                   data={"path": data_cfg.path, "fingerprint": data_fingerprint(data_cfg.path)}, distill=to_dict(cfg))
    typer.echo(json.dumps({"scores": str(out), "pairs": len(df),
                           "mean_teacher_score_by_label": {str(k): round(float(v), 4) for k, v in
                                                           df.groupby(df["esci_label"].fillna("unjudged"))["teacher_score"].mean().items()}}, indent=2))


@distill_app.command("train")
def train_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    loss: Annotated[Optional[str], typer.Option(help="margin-mse | kl | mse (default: distill.loss).")] = None,
    human_only: Annotated[bool, typer.Option("--human-only", help="Train on judged pairs only, without the teacher.")] = False,
    scores: Annotated[Optional[Path], typer.Option(help="Teacher scores parquet (default RUN/scores/scores.parquet), a FlagEmbedding .jsonl or a sentence-transformers Margin-MSE dataset folder (from `distill export`).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Student directory (default RUN/student or RUN/student-human).")] = None,
    student: Annotated[Optional[str], typer.Option(help="Base student: short name, hub id or folder (default: distill.student).")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Training epochs (default: distill.epochs).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps cap.")] = None,
    mnrl_weight: Annotated[Optional[float], typer.Option(help="Weight of the in-batch MNRL term (0 disables).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the last checkpoint.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace --output even when it is not a student directory.")] = False,
) -> None:
    """Train the student (distilled, or --human-only) → a sentence-transformers folder + manifest.json."""
    from reldistill.artifacts import RunDir, read_json
    from reldistill.distill.train import train_human_student, train_student

    cfg, data_cfg = _configs(config, data, loss=loss, student=student, epochs=epochs, max_steps=max_steps, mnrl_weight=mnrl_weight)
    rd = RunDir(run, create=True)
    if human_only:
        out = train_human_student(output or rd.root / "student-human", cfg, data_cfg, resume=resume, force=force)
    else:
        scores_path = scores or rd.scores / "scores.parquet"
        teacher_dir = rd.teacher if rd.teacher.is_dir() else None
        out = train_student(scores_path, output or rd.student, cfg, data_cfg, teacher_dir=teacher_dir, resume=resume, force=force)
    m = read_json(Path(out) / "manifest.json")
    typer.echo(json.dumps({"student": str(out), "loss": m["loss"], "steps": m["steps"], "dev": {k: m["dev"][k] for k in ("base", "best")}}, indent=2))


@distill_app.command("export")
def export_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    scores: Annotated[Optional[Path], typer.Option(help="Teacher scores parquet (default RUN/scores/scores.parquet).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write (default RUN/export).")] = None,
) -> None:
    """Teacher-labelled train candidates → OUT/flagembedding.jsonl (FlagEmbedding) + OUT/margin-mse/ (sentence-transformers)."""
    import numpy as np

    from reldistill.artifacts import RunDir, write_manifest
    from reldistill.config import to_dict
    from reldistill.distill.examples import blended_targets, margin_rows
    from reldistill.distill.interchange import flag_records, st_margin_dataset, write_flag_jsonl
    from reldistill.distill.train import _load_data, scored_frame

    cfg, data_cfg = _configs(config, data)
    rd = RunDir(run)
    scores_path = scores or rd.scores / "scores.parquet"
    data_obj, examples = _load_data(data_cfg)
    df = scored_frame(scores_path, data_obj, examples)
    target = blended_targets(df, cfg.human_weight)
    dest = out or rd.root / "export"
    dest.mkdir(parents=True, exist_ok=True)
    records = flag_records(df, target)
    flag = write_flag_jsonl(records, dest / "flagembedding.jsonl")
    triplets = margin_rows(df, target, cfg, np.random.default_rng(cfg.seed))
    st_dir = dest / "margin-mse"
    st_margin_dataset(triplets).save_to_disk(str(st_dir))
    write_manifest(dest, "labelled-data", scores=str(Path(scores_path).resolve()), flagembedding=flag.name,
                   flagembedding_queries=len(records), margin_mse=st_dir.name, margin_mse_rows=len(triplets["label"]),
                   distill=to_dict(cfg))
    typer.echo(json.dumps({"flagembedding": str(flag), "queries": len(records), "margin_mse": str(st_dir),
                           "triplets": len(triplets["label"])}, indent=2))


@distill_app.command("eval")
def eval_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    split: Annotated[list[str], typer.Option(help="Split(s) to score (dev selects; test is for reports only).")] = ["dev", "test"],  # noqa: B006
    student: Annotated[Optional[list[str]], typer.Option(help="Student(s) to score (default: base, RUN/student-human, RUN/student*).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write the table as JSON here.")] = None,
) -> None:
    """Full-catalog nDCG@10 / Recall@100 of students on the given splits (ESCI gains)."""
    from rich.table import Table

    from reldistill.artifacts import write_json
    from reldistill.data import load_esci
    from reldistill.distill.dev_eval import evaluate_student
    from reldistill.distill.mine import with_dev_split
    from reldistill.progress import console
    from reldistill.student.encode import encode_documents, load_student, set_max_seq_length

    cfg, data_cfg = _configs(config, data)
    names = list(student or [])
    if not names:
        names = [cfg.student] + sorted(str(p) for p in Path(run).glob("student*") if (p / "manifest.json").is_file())
    data_obj = load_esci(data_cfg)
    examples = with_dev_split(data_obj, data_cfg.dev_fraction, data_cfg.seed)
    results = {}
    for name in names:
        model = load_student(name)
        set_max_seq_length(model, cfg.max_seq_length)
        docs = encode_documents(model, data_obj.products["text"].tolist(), show_progress=True)
        results[name] = {s: evaluate_student(model, examples, data_obj.products, s, doc_embeddings=docs) for s in split}
    table = Table("student", *(f"{s} {m}" for s in split for m in ("nDCG@10", "R@100")))
    for name, res in results.items():
        table.add_row(Path(name).name, *(f"{res[s][m]:.4f}" for s in split for m in ("ndcg@10", "recall@100")))
    console.print(table)
    if out:
        write_json(out, results)
    typer.echo(json.dumps(results, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(distill_app, name="distill")
