"""`reldistill teacher train | score | eval | plan` (heavy imports inside the commands)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from reldistill.artifacts import check_output_file, write_parquet
from reldistill.bench.teacher_dtypes import compare_dtypes as bench
from reldistill.config import DataConfig, require_int
from reldistill.errors import UserError
from reldistill.precision import parse_dtype, resolve_dtype
from reldistill.recipe import load_recipe, option_help, override
from reldistill.recipe.teacher import ScoreConfig, TrainConfig
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime
from reldistill.teacher.evaluate import evaluate_teacher
from reldistill.teacher.plan import plan_teacher
from reldistill.teacher.score import SCORES_KIND, read_pairs, score_file_stats

teacher_app = typer.Typer(help="LoRA LLM cross-encoder teacher: train, score pairs, evaluate, plan.", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Recipe YAML (teacher/train/score/data sections).")]
ScoreConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (its score: and data: sections).")]
TeacherOpt = Annotated[Path, typer.Option("--teacher", "-t", help="Teacher artifact directory (from `teacher train`).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help=option_help(DataConfig, "path"))]
DtypeOpt = Annotated[Optional[str], typer.Option(help=option_help(ScoreConfig, "dtype"))]
BatchOpt = Annotated[Optional[int], typer.Option(help=option_help(ScoreConfig, "batch_size"))]


def _print(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _score_settings(score: ScoreConfig, **options) -> ScoreConfig:
    """The recipe's ``score:`` section with the CLI options given (each checked under its flag name first)."""
    for name, value in options.items():
        if value is not None:
            flag = "--" + name.replace("_", "-")
            options[name] = parse_dtype(value, flag) if name == "dtype" else require_int(value, flag)
    return override(score, **options)


@teacher_app.command("train")
def train_cmd(
    config: ConfigOpt,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Teacher directory (default runs/<recipe>/teacher).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the last checkpoint in OUTPUT/checkpoints.")] = True,
    max_steps: Annotated[Optional[int], typer.Option(help=option_help(TrainConfig, "max_steps"))] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help=option_help(TrainConfig, "max_minutes"))] = None,
    data: DataOpt = None,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help=option_help(TrainConfig, "init_from"))] = None,
) -> None:
    """Train the teacher (BCEWithLogits on soft labels). Works under `accelerate launch -m reldistill.workflow.cli`."""
    from reldistill.teacher.train import train_teacher  # torch, transformers

    recipe = load_recipe(config)
    recipe = dataclasses.replace(recipe, data=override(recipe.data, path=str(data) if data else None),
                                 train=override(recipe.train, init_from=str(init_from) if init_from else None))
    out = output or RunDir(Path("runs") / config.stem, check=False).teacher
    path = train_teacher(recipe, out, resume=resume, max_steps=max_steps, max_minutes=max_minutes,
                         runtime=Runtime.from_env(student=recipe.student))
    from accelerate import PartialState

    if PartialState().is_main_process:  # already initialised by train_teacher
        m = json.loads((path / "manifest.json").read_text())
        typer.echo(f"teacher written to {path}: {m['steps']}/{m['total_steps']} steps in {m['train_minutes']} min, "
                   f"dev {json.dumps(m.get('dev_metrics'))} (untrained: {json.dumps(m.get('dev_metrics_untrained'))})")


@teacher_app.command("score")
def score_cmd(
    teacher: TeacherOpt,
    pairs: Annotated[Path, typer.Option("--pairs", "-p", help="Parquet with query, product_id (and optionally text).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output parquet (input columns + teacher_score + teacher_logit).")],
    dtype: DtypeOpt = None,
    batch_size: BatchOpt = None,
    shard_size: Annotated[Optional[int], typer.Option(help=option_help(ScoreConfig, "shard_size"))] = None,
    limit: Annotated[Optional[int], typer.Option(help="Score only the first N rows.")] = None,
    compare_dtypes: Annotated[bool, typer.Option("--compare-dtypes", help="Also time fp32 vs bf16 on the same pairs and print pairs/s.")] = False,
    data: DataOpt = None,
    config: ScoreConfigOpt = None,
) -> None:
    """Score (query, product) pairs with the teacher: sharded, resumable, multi-process under accelerate."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}.")
    check_output_file(out, SCORES_KIND, inputs=(pairs,))
    recipe = load_recipe(config)
    runtime = Runtime.from_env(student=recipe.student)
    score = _score_settings(recipe.score, dtype=dtype, batch_size=batch_size, shard_size=shard_size)
    dtype, batch_size, shard_size = score.dtype, score.batch_size, score.shard_size
    data_cfg = override(recipe.data, path=str(data) if data else None) if data or config else None
    if compare_dtypes:
        from reldistill.teacher.artifact import open_artifact  # torch (safetensors)

        open_artifact(teacher)
        df, texts = read_pairs(pairs, data_cfg)
        n = min(limit or len(df), len(df))
        rows, logits = bench(teacher, df["query"].astype(str).tolist()[:n], texts[:n], batch_size=batch_size,
                             runtime=runtime)
        for r in rows:
            typer.echo(f"{r['dtype']:>9}: {r['pairs']:,} pairs in {r['seconds']:.1f} s = {r['pairs_per_s']:.1f} pairs/s"
                       + (f"  (max |Δscore| vs fp32 {r['max_abs_diff']:.4f}, Spearman {r['spearman_vs_first']:.4f})" if "max_abs_diff" in r else ""))
        typer.echo("BENCH " + json.dumps(rows))
        chosen = str(resolve_dtype(dtype, "--dtype", runtime)).removeprefix("torch.")
        if chosen in logits:  # the timed run of the chosen dtype already scored every pair: write it
            import numpy as np

            result = df.iloc[:n].copy()
            lg = logits[chosen]
            result["teacher_score"] = (1.0 / (1.0 + np.exp(-lg.astype(np.float64)))).astype(np.float32)
            result["teacher_logit"] = lg
            write_parquet(out, result, kind=SCORES_KIND)
            typer.echo(f"scored {n:,} pairs ({chosen}) → {out}")
            return
    stats = score_file_stats(teacher, pairs, out, data_cfg, batch_size, dtype, shard_size, progress=True, limit=limit,
                             runtime=runtime)
    rate = f"{stats['pairs_per_s']:.1f} pairs/s" if stats["pairs_per_s"] else "all shards were already done"
    typer.echo(f"scored {stats['pairs']:,} pairs ({stats['scored_now']:,} now, {stats['dtype']}, {rate}) → {stats['out']}")


@teacher_app.command("eval")
def eval_cmd(
    teacher: TeacherOpt,
    data: DataOpt = None,
    split: Annotated[str, typer.Option(help="train | dev | test (dev is carved from train as in training).")] = "test",
    dtype: DtypeOpt = None,
    batch_size: BatchOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """MSE of sigmoid(logit) vs soft label, graded nDCG of each query's judged candidates, per-label score distributions."""
    score = _score_settings(ScoreConfig(), dtype=dtype, batch_size=batch_size)
    dtype, batch_size = score.dtype, score.batch_size
    res = evaluate_teacher(teacher, split=split, data_path=str(data) if data else None, dtype=dtype, batch_size=batch_size,
                           runtime=Runtime.from_env())
    if as_json:
        _print(res)
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    m = res["metrics"]
    con.print(f"[bold]{res['teacher']}[/] on {res['split']} ({m['pairs']:,} pairs, {m['ndcg_queries']} ranked queries): "
              f"MSE {m['mse']:.4f} · nDCG {m['ndcg'] if m['ndcg'] is None else round(m['ndcg'], 4)} · "
              f"nDCG@10 {m['ndcg@10'] if m['ndcg@10'] is None else round(m['ndcg@10'], 4)}", highlight=False)
    t = Table("label", "n", "mean", "p10", "p25", "p50", "p75", "p90", title="teacher score by ESCI label")
    for lab, d in res["by_label"].items():
        t.add_row(lab, str(d["n"]), *(f"{d[k]:.3f}" for k in ("mean", "p10", "p25", "p50", "p75", "p90")))
    con.print(t)


@teacher_app.command("plan")
def plan_cmd(config: ConfigOpt, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
             device: Annotated[str, typer.Option(help="gpu (CUDA memory) | cpu (peak RSS per training process).")] = "gpu") -> None:
    """Backbone, LoRA/head/total parameters and estimated training memory — offline, no weights."""
    recipe = load_recipe(config)  # bad recipes fail before the heavy imports
    p = plan_teacher(recipe, device=device, runtime=Runtime.from_env(student=recipe.student))
    if as_json:
        _print(p)
        return
    e = p["training_memory_estimate"]
    typer.echo(f"backbone   {p['backbone']['model']} ({p['backbone']['architecture']}, {p['backbone']['layers']} layers, "
               f"hidden {p['backbone']['hidden_size']}): {p['backbone']['parameters']:,} params")
    typer.echo(f"LoRA       r={p['lora']['r']} on {', '.join(p['lora']['target_modules'])}: {p['lora']['trainable_parameters']:,} trainable params")
    typer.echo(f"head       {p['head']['kind']}: {p['head']['parameters']:,} params")
    typer.echo(f"total      {p['total_parameters']:,} params ({p['trainable_parameters']:,} trainable, {p['trainable_percent']}%)")
    typer.echo(f"memory     ≈{e['total_gib']} GiB to train at batch {e['batch_size_per_device']}×{e['max_length']} tokens, {e['precision']}"
               f"{', 4-bit' if e['load_in_4bit'] else ''}{', grad-ckpt' if e['gradient_checkpointing'] else ''} "
               f"(weights {e['weights_gib']}, trainable+AdamW {e['trainable_and_optimizer_gib']}, activations {e['activations_gib']}, "
               f"{'checkpoint while loading ' + str(e['checkpoint_while_loading_gib']) + ', ' if e['checkpoint_while_loading_gib'] else ''}"
               f"reserve {e['reserve_gib']}) on {e['device']}")
    by = e["by_precision_gib"]
    typer.echo(f"precision  ≈{by['bf16']} GiB bf16 · ≈{by['4bit_nf4']} GiB 4-bit NF4 (QLoRA: teacher.load_in_4bit) on {e['device']}")
    if e["fits"]:
        typer.echo("fits       " + ", ".join(f"{g}: {'yes' if ok else 'no'}" for g, ok in e["fits"].items()))


@teacher_app.command("export")
def export_cmd(
    teacher: TeacherOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (AutoModelForSequenceClassification + tokenizer).")],
    dtype: Annotated[str, typer.Option(help="fp32 | bf16: the weights' precision in the export (ONNX: fp32).")] = "fp32",
    force: Annotated[bool, typer.Option("--force", help="Replace --out even when it is not an earlier export.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="auto | transformers | onnx (auto: transformers for the linear "
                                                      "and lm heads, onnx for mlp).")] = "auto",
) -> None:
    """Merge LoRA into the backbone and write a folder a serving engine loads without reldistill: a transformers
    sequence-classification model (linear, lm heads: vLLM, TEI) or ONNX (any head, mlp included: ONNX Runtime)."""
    from reldistill.teacher.export import export_teacher

    typer.echo(str(export_teacher(teacher, out, dtype=dtype, force=force, fmt=fmt)))

def register(app: typer.Typer) -> None:
    app.add_typer(teacher_app, name="teacher")

