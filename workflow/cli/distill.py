"""`reldistill distill mine | label | train | export | eval` (heavy imports inside the commands)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from reldistill.artifacts import check_output_file, read_json, write_json
from reldistill.config import DataConfig, require_int
from reldistill.errors import UserError
from reldistill.precision import parse_dtype
from reldistill.progress import console
from reldistill.recipe import Recipe, load_recipe, option_help, override
from reldistill.recipe.distill import DistillConfig
from reldistill.recipe.teacher import ScoreConfig
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime

distill_app = typer.Typer(help="Distil teacher scores into a bi-encoder student: mine candidates, label them, train.",
                          no_args_is_help=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (distill/data sections).")]
RunOpt = Annotated[Path, typer.Option("--run", "-r", help="Run directory (teacher/, scores/, student/ ...).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help=option_help(DataConfig, "path"))]


def _opt(name: str, *flags: str):
    """A typer option mirroring ``distill.<name>`` (None: the recipe's value)."""
    return typer.Option(*flags, help=option_help(DistillConfig, name))


def _recipe(config: Optional[Path], data: Optional[Path], **overrides) -> Recipe:
    """The recipe (defaults without ``--config``) with ``--data`` and the distill options given."""
    recipe = load_recipe(config)
    return dataclasses.replace(recipe, distill=override(recipe.distill, **overrides),
                               data=override(recipe.data, path=str(data) if data is not None else None))


@distill_app.command("mine")
def mine_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    queries: Annotated[Optional[Path], _opt("queries_path", "--queries")] = None,
) -> None:
    """Mine candidates for train queries (judged + BM25 + dense + unlabeled) → RUN/candidates/candidates.parquet + manifest."""
    from reldistill.distill.mine import mine_to

    r = _recipe(config, data, queries_path=str(queries) if queries else None)
    cfg, data_cfg = r.distill, r.data
    rd = RunDir.for_output(run)
    m = mine_to(rd.candidates, cfg, data_cfg, runtime=Runtime.from_env(student=r.student), catalog_cache=rd.eval_cache)
    typer.echo(json.dumps({"candidates": str(rd.candidates_file), **{k: m[k] for k in ("pairs", "queries", "by_source")}}, indent=2))


@distill_app.command("label")
def label_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", "-t", help="Teacher directory (default RUN/teacher).")] = None,
    candidates: Annotated[Optional[Path], typer.Option(help="Candidates parquet (default RUN/candidates/candidates.parquet).")] = None,
    dtype: Annotated[Optional[str], typer.Option(help=option_help(ScoreConfig, "dtype"))] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=option_help(ScoreConfig, "batch_size"))] = None,
) -> None:
    """Score every candidate with the teacher (resumable) → RUN/scores/scores.parquet + manifest."""
    import pandas as pd

    from reldistill.distill.label import label_candidates

    if batch_size is not None:
        require_int(batch_size, "--batch-size")
    r = _recipe(config, data)
    data_cfg = r.data
    score = override(r.score, batch_size=batch_size, dtype=parse_dtype(dtype, "--dtype") if dtype else None)
    rd = RunDir(run)
    cands = candidates or rd.candidates_file
    if not Path(cands).is_file():
        raise UserError(f"candidates file {cands} does not exist — run `reldistill distill mine --run {run}` first.")
    out = label_candidates(cands, teacher or rd.teacher, rd.scores_file, data_cfg, score,
                           runtime=Runtime.from_env(student=r.student))
    df = pd.read_parquet(out)
    typer.echo(json.dumps({"scores": str(out), "pairs": len(df),
                           "mean_teacher_score_by_label": {str(k): round(float(v), 4) for k, v in
                                                           df.groupby(df["esci_label"].fillna("unjudged"))["teacher_score"].mean().items()}}, indent=2))


@distill_app.command("train")
def train_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    loss: Annotated[Optional[str], _opt("loss")] = None,
    human_only: Annotated[bool, typer.Option("--human-only", help="Train on judged pairs only, without the teacher.")] = False,
    scores: Annotated[Optional[Path], typer.Option(help="Teacher scores parquet (default RUN/scores/scores.parquet), a FlagEmbedding .jsonl or a sentence-transformers Margin-MSE dataset folder (from `distill export`).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Student directory (default RUN/student or RUN/student-human).")] = None,
    student: Annotated[Optional[str], _opt("student")] = None,
    epochs: Annotated[Optional[float], _opt("epochs")] = None,
    max_steps: Annotated[Optional[int], _opt("max_steps")] = None,
    mnrl_weight: Annotated[Optional[float], _opt("mnrl_weight")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the last checkpoint.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace --output even when it is not a student directory.")] = False,
) -> None:
    """Train the student (distilled, or --human-only) → a sentence-transformers folder + manifest.json."""
    from reldistill.distill.train import train_human_student, train_student

    r = _recipe(config, data, loss=loss, student=student, epochs=epochs, max_steps=max_steps, mnrl_weight=mnrl_weight)
    cfg, data_cfg = r.distill, r.data
    runtime = Runtime.from_env(student=r.student)
    rd = RunDir(run, create=True)
    if human_only:
        out = train_human_student(output or rd.student_human, cfg, data_cfg, resume=resume, force=force, runtime=runtime)
    else:
        scores_path = scores or rd.scores_file
        teacher_dir = rd.teacher if rd.teacher.is_dir() else None
        out = train_student(scores_path, output or rd.student, cfg, data_cfg, teacher_dir=teacher_dir, resume=resume, force=force,
                            runtime=runtime)
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
    from reldistill.distill.export import export_labelled

    r = _recipe(config, data)
    cfg, data_cfg = r.distill, r.data
    rd = RunDir(run)
    dest = out or rd.export
    m = export_labelled(scores or rd.scores_file, dest, cfg, data_cfg)
    typer.echo(json.dumps({"flagembedding": str(dest / m["flagembedding"]), "queries": m["flagembedding_queries"],
                           "margin_mse": str(dest / m["margin_mse"]), "triplets": m["margin_mse_rows"]}, indent=2))


@distill_app.command("eval")
def eval_cmd(
    run: RunOpt,
    config: ConfigOpt = None,
    data: DataOpt = None,
    split: Annotated[list[str], typer.Option(help="Split(s) to score (dev selects; test is for reports only).")] = ["dev", "test"],  # noqa: B006
    student: Annotated[Optional[list[str]], typer.Option(help="Student(s) to score (default: base, RUN/student-human, RUN/student*).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write the table as JSON here (a new file).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out even when it already exists.")] = False,
) -> None:
    """Full-catalog nDCG@10 / Recall@100 of students on the given splits (ESCI gains)."""
    from rich.table import Table

    from reldistill.data import load_esci
    from reldistill.distill.mine import with_dev_split
    from reldistill.student.dev_eval import evaluate_student  # torch (the student encoder)
    from reldistill.student.encode import encode_documents, load_student, set_max_seq_length

    r = _recipe(config, data)
    cfg, data_cfg = r.distill, r.data
    runtime = Runtime.from_env(student=r.student)
    RunDir(run)
    if out is not None:
        check_output_file(out, "student-eval", force=force)
    names = list(student or [])
    if not names:
        names = [cfg.student] + sorted(str(p) for p in Path(run).glob("student*") if (p / "manifest.json").is_file())
    data_obj = load_esci(data_cfg)
    examples = with_dev_split(data_obj, data_cfg.dev_fraction, data_cfg.seed)
    missing = sorted(set(split) - set(examples["split"].astype(str)))
    if missing:  # before the catalog is encoded
        raise UserError(f"--split {missing[0]!r} is not a split of the data (it has {', '.join(sorted(examples['split'].astype(str).unique()))}).")
    results = {}
    for name in names:
        model = load_student(name, runtime=runtime)
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
