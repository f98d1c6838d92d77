"""The production recipe at its real size, on whatever machine this runs (a CPU here, a GPU box as well).

    nice -n 19 python scripts/production_dryrun.py --config configs/llama-3.2-1b-a100.yaml \
        --data ../shared/data/esci-extended --work runs/production-dryrun \
        --json docs/production-dryrun.json --doc docs/production.md

The seed recipe (``--config``) runs unchanged except its data (a small subset of ``--data``, written in the
official ESCI layout), ``teacher.max_length`` (``--max-length``), the per-process batch (``--batch-size``, so an
epoch is ~10 steps and the 20 % checkpoint comes after 2), fp32 (``--precision``: exact resume) and
``log_every: 1``; every change is recorded in the JSON. The backbone is ``teacher.model_config``'s architecture
with random weights (``--base DIR``: real weights instead). Phases, each recorded in ``--json`` as it finishes
(a rerun skips the phases already there unless ``--phases`` names them):

* ``train``  — ``accelerate launch`` with ``--processes`` CPU processes (gloo): trainable parameters against
  ``teacher plan``, peak RSS per process against the plan's estimate for this device and dtype, s/step, tokens/s;
* ``resume`` — the same run killed with SIGKILL after the 20 % checkpoint, rerun: the next steps' losses
  against the uninterrupted run's;
* ``export`` — ``teacher export`` (mlp head → ONNX); ONNX Runtime in a fresh interpreter without reldistill
  scores pairs of different lengths against ``Teacher.score_pairs``;
* ``score``  — ``teacher score`` of ``--score-pairs`` pairs by ``--processes`` processes against one process.

``--doc`` renders the markdown page from the JSON (``--phases doc`` renders only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from reldistill.settings import Runtime

REPO = Path(__file__).resolve().parents[1]
PHASES = ("train", "resume", "export", "score")
GIB = 1024**3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs/llama-3.2-1b-a100.yaml"), help="the seed recipe")
    p.add_argument("--data", default=str(REPO.parent / "shared/data/esci-extended"), help="an ESCI folder to take the subset from")
    p.add_argument("--base", default=None, help="a local model folder with real weights (default: random weights)")
    p.add_argument("--work", default=str(REPO / "runs/production-dryrun"), help="scratch folder (base, data, runs)")
    p.add_argument("--json", default=str(REPO / "docs/production-dryrun.json"))
    p.add_argument("--doc", default=None, help="markdown page rendered from the JSON")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {', '.join(PHASES)}, doc")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--train-pairs", type=int, default=40, help="train pairs in the subset (~10 steps/epoch at 2 × 2)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=2, help="per process")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--score-pairs", type=int, default=1000)
    p.add_argument("--score-words", type=int, default=2, help="product-title words per scored pair (short pairs)")
    p.add_argument("--parity-pairs", type=int, default=16, help="pairs scored by ONNX Runtime against the teacher")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per subprocess")
    return p.parse_args(argv)


# ---------------------------------------------------------------- the worker (one process under accelerate launch)

def peak_rss_bytes() -> int:
    """This process's own peak RSS: VmHWM, which starts afresh at exec. (Linux carries ru_maxrss across exec, so
    a process started by a parent holding a 1B model reports the parent's RSS as its own peak.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def worker(rss_dir: str, cli_args: list[str]) -> None:
    """Run ``reldistill <cli_args>`` in this process and write its peak RSS to ``rss_dir/rank-N.json`` at exit."""
    import atexit

    rank = int(os.environ.get("RANK", "0"))

    def record() -> None:
        Path(rss_dir, f"rank-{rank}.json").write_text(json.dumps({"rank": rank, "peak_rss_bytes": peak_rss_bytes()}))

    atexit.register(record)
    from reldistill.workflow.cli import main as cli_main

    sys.argv = ["reldistill", *cli_args]
    cli_main()


# ---------------------------------------------------------------- set-up: machine, base, data, recipe

def cpu_info() -> dict:
    name, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {"cpu": name, "cores": os.cpu_count(), "isa": isa, "machine": platform.machine(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1)}


def make_random_base(model_config: str, out: Path, seed: int = 0) -> Path:
    """The architecture of ``model_config`` with random weights, saved in its own dtype (bf16 for Llama-3.2-1B,
    as the hub ships it), with a small byte-level tokenizer that has Llama-3's special tokens."""
    import torch
    from transformers import AutoConfig, AutoModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the tokenizer builder lives in tests/
    from tests.builders.tiny_teacher import build_tiny_tokenizer

    if (out / "config.json").is_file():
        return out
    raw = json.loads(Path(model_config).read_text())
    cfg = AutoConfig.for_model(raw.pop("model_type"), **raw)
    torch.manual_seed(seed)
    model = AutoModel.from_config(cfg, dtype=torch.float32)
    dtype = getattr(torch, str(raw.get("torch_dtype") or "float32"))
    tmp = out.with_name(out.name + ".tmp")
    model.to(dtype).save_pretrained(str(tmp))
    build_tiny_tokenizer().save_pretrained(str(tmp))
    tmp.rename(out)
    return out


def make_data(src: str, out: Path, train_pairs: int, seed: int = 0) -> Path:
    """A subset of ``src`` in the official ESCI layout: US train queries until ``train_pairs`` pairs (+ one for dev
    per 20), and a few test queries; the products they judge."""
    import pandas as pd

    if (out / "shopping_queries_dataset_examples.parquet").is_file():
        return out
    ex = pd.read_parquet(Path(src) / "shopping_queries_dataset_examples.parquet")
    pr = pd.read_parquet(Path(src) / "shopping_queries_dataset_products.parquet")
    ex = ex[ex["product_locale"] == "us"]
    keep = []
    for split, want in (("train", train_pairs * 1.25), ("test", 8)):
        sizes = ex[ex["split"] == split].groupby("query_id", sort=False).size()
        sizes = sizes[(sizes >= 2) & (sizes <= 6)].sample(frac=1.0, random_state=seed)
        keep += list(sizes.index[: int((sizes.cumsum() <= want).sum()) + 1])
    sub = ex[ex["query_id"].isin(keep)]
    out.mkdir(parents=True, exist_ok=True)
    sub.to_parquet(out / "shopping_queries_dataset_examples.parquet", index=False)
    pr[pr["product_id"].isin(set(sub["product_id"]))].to_parquet(out / "shopping_queries_dataset_products.parquet", index=False)
    return out


def make_recipe(args, base: Path, data: Path, out: Path) -> tuple[Path, dict]:
    """The seed recipe with only data, length, batch, precision and logging changed; returns (path, changes)."""
    import yaml

    recipe = yaml.safe_load(Path(args.config).read_text())
    changes = {"data.path": str(data), "teacher.model": str(base), "teacher.max_length": args.max_length,
               "train.batch_size": args.batch_size, "train.precision": args.precision, "train.log_every": 1,
               "train.cpu_threads": args.threads}
    for key, value in changes.items():
        section, name = key.split(".")
        recipe.setdefault(section, {})[name] = value
    mc = recipe["teacher"].get("model_config")
    if mc and not Path(mc).is_absolute():
        recipe["teacher"]["model_config"] = str((REPO / mc).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return out, changes


# ---------------------------------------------------------------- launching the CLI

def child_env(threads: int) -> dict[str, str]:
    """Subprocess settings: offline, ``threads`` torch threads, fp32 teacher (no int8 gate), this checkout first."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false", "RELDISTILL_TEACHER_INT8": "off",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def cli_cmd(processes: int, cli_args: list[str], rss_dir: Path | None = None) -> list[str]:
    """``reldistill <cli_args>``, under ``accelerate launch`` with ``processes`` processes when > 1 (gloo on a CPU);
    with ``rss_dir`` through this script's worker, which records each process's peak RSS."""
    inner = [str(Path(__file__).resolve()), "--worker-rss", str(rss_dir)] if rss_dir else ["-m", "reldistill.workflow.cli"]
    if processes == 1:
        return [sys.executable, *inner, *cli_args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *inner, *cli_args]


def run(cmd: list[str], env: dict, timeout: int, log: Path) -> float:
    """Run ``cmd`` to completion (output to ``log``); its wall time in seconds; one clear error on failure."""
    t0 = time.monotonic()
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}); the end of {log}:\n{tail}")
    return time.monotonic() - t0


# ---------------------------------------------------------------- train: parameters, RSS against the plan, speed

def train_layout(recipe_path: Path, processes: int) -> dict:
    """What the run will do, computed the way training does: the step plan and each step's token ids."""
    from reldistill.recipe import load_recipe
    from reldistill.teacher.backbone import load_tokenizer
    from reldistill.teacher.inputs import PairEncoder, choose_pad_token
    from reldistill.teacher.pairs import split_pairs
    from reldistill.teacher.train import make_plan

    recipe = load_recipe(recipe_path)
    tc, tr = recipe.teacher, recipe.train
    train_df = split_pairs(recipe.data, tr.include_sparse)["train"]
    tok = load_tokenizer(tc.model)
    choose_pad_token(tok)
    ids = PairEncoder(tok, tc.template, tc.max_length, tc.padding_side).encode(train_df["query"].tolist(), train_df["text"].tolist())
    plan = make_plan(len(ids), processes, tr.batch_size, tr.grad_accum, tr.epochs, tr.checkpoint_fraction)
    return {"recipe": recipe, "plan": plan, "ids": ids}


def tokens_per_step(layout: dict, processes: int, steps: range) -> list[dict]:
    """Per process: real and padded tokens it runs through the model in ``steps`` (1-based)."""
    from reldistill.teacher.train import micro_batch_indices

    plan, ids, seed = layout["plan"], layout["ids"], layout["recipe"].train.seed
    out = []
    for rank in range(processes):
        real = padded = 0
        for step in steps:
            for j in range(plan.grad_accum):
                lens = [len(ids[i]) for i in micro_batch_indices(plan, (step - 1) * plan.grad_accum + j, rank, seed)]
                real, padded = real + sum(lens), padded + len(lens) * max(lens)
        out.append({"rank": rank, "tokens": real, "padded_tokens": padded})
    return out


def read_log(teacher_dir: Path) -> list[dict]:
    from reldistill.teacher.train import LOG_FILE

    return [json.loads(x) for x in (teacher_dir / LOG_FILE).read_text().splitlines() if x.strip()]


def step_seconds(log: list[dict]) -> dict[int, float]:
    """Wall seconds of each training step after the first, from the log's timestamps (a checkpoint's save and dev
    evaluation are not counted: a step is timed from the event logged just before it)."""
    out = {}
    for prev, ev in zip(log, log[1:]):
        if ev["event"] == "train" and ev["step"] > 1 and not (prev["event"] == "train" and prev["step"] >= ev["step"]):
            out[ev["step"]] = ev["time"] - prev["time"]
    return out


def trainable_counts(teacher_dir: Path) -> dict:
    from safetensors import safe_open

    from reldistill.teacher.artifact import ADAPTER_DIR, HEAD_FILE

    def count(path: Path) -> int:
        with safe_open(str(path), framework="pt") as f:
            return sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())

    lora = count(teacher_dir / ADAPTER_DIR / "adapter_model.safetensors")
    head = count(teacher_dir / HEAD_FILE)
    return {"lora": lora, "head": head, "total": lora + head}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# the architecture shrunk to nothing: what a launched training process holds besides the model it trains
SHRINK = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
          "num_key_value_heads": 1, "head_dim": 8}


def process_baseline_gib(args, ctx: dict) -> float:
    """The plan's CPU reserve, measured here: the peak RSS of the same launch (processes, recipe, data) training
    one step of the architecture shrunk to one 16-wide layer — libraries, data, process group, allocator,
    everything but the model (its vocabulary stays: a few MB). (An import-only interpreter misses 15 % of it for a
    tiny model; a fixed 0.5 GiB was 35 % off on some installs.)"""
    from reldistill.recipe import load_recipe

    work = ctx["work"] / "baseline"
    full = load_recipe(ctx["recipe"])  # the dry run's recipe: its model_config made absolute, its data subset
    raw = json.loads(Path(full.teacher.model_config).read_text())
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps({**raw, **SHRINK}))
    base = make_random_base(str(work / "config.json"), work / "base")
    recipe, _ = make_recipe(args, base, Path(full.data.path), work / "recipe.yaml")
    rss_dir = work / "rss"
    rss_dir.mkdir(exist_ok=True)
    cmd = cli_cmd(args.processes, ["teacher", "train", "--config", str(recipe), "--output", str(work / "teacher"),
                                   "--max-steps", "1", "--no-resume"], rss_dir)
    run(cmd, ctx["env"], args.timeout, work / "train.log")
    return max(json.loads(p.read_text())["peak_rss_bytes"] for p in rss_dir.glob("rank-*.json")) / GIB


def train_phase(args, ctx: dict) -> dict:
    """The uninterrupted run: parameters, peak RSS per process against the plan, s/step and tokens/s."""
    from reldistill.recipe import load_recipe
    from reldistill.teacher.plan import plan_teacher

    stop = 2 * ctx["layout"]["plan"].ckpt_every
    out, rss_dir = ctx["work"] / "train-full", ctx["work"] / "rss-full"
    rss_dir.mkdir(parents=True, exist_ok=True)
    cmd = cli_cmd(args.processes, ["teacher", "train", "--config", str(ctx["recipe"]), "--output", str(out),
                                   "--max-steps", str(stop), "--no-resume"], rss_dir)
    wall = run(cmd, ctx["env"], args.timeout, ctx["work"] / "train-full.log")
    baseline = process_baseline_gib(args, ctx)
    plan = plan_teacher(load_recipe(ctx["recipe"]), device="cpu", process_gib=baseline)
    est = plan["training_memory_estimate"]
    est_bytes = est["total_gib"] * GIB
    rss = sorted((json.loads(p.read_text()) for p in rss_dir.glob("rank-*.json")), key=lambda r: r["rank"])
    for r in rss:
        r["peak_rss_gib"] = round(r.pop("peak_rss_bytes") / GIB, 3)
        r["plan_error"] = round(r["peak_rss_gib"] * GIB / est_bytes - 1, 4)
    log = read_log(out)
    secs = step_seconds(log)
    timed = sorted(secs)
    per_step = sum(secs.values()) / max(len(secs), 1)
    toks = tokens_per_step(ctx["layout"], args.processes, range(timed[0], timed[-1] + 1)) if timed else []
    for t in toks:
        t["tokens_per_s"] = round(t["tokens"] / max(sum(secs.values()), 1e-9), 1)
        t["padded_tokens_per_s"] = round(t["padded_tokens"] / max(sum(secs.values()), 1e-9), 1)
    counted = trainable_counts(out)
    m = json.loads((out / "manifest.json").read_text())
    return {"command": " ".join(cmd), "wall_s": round(wall, 1), "steps": m["steps"], "processes": m["processes"],
            "precision": m["precision"], "steps_per_epoch": ctx["layout"]["plan"].steps_per_epoch,
            "checkpoint_every": ctx["layout"]["plan"].ckpt_every, "checkpoints": [h["step"] for h in m["history"]],
            "parameters": {"lora": counted["lora"], "head": counted["head"], "trainable": counted["total"],
                           "plan_lora": plan["lora"]["trainable_parameters"], "plan_head": plan["head"]["parameters"],
                           "backbone": plan["backbone"]["parameters"]},
            "plan": est, "process_baseline_gib": round(baseline, 3), "rss": rss, "rss_max_plan_error": max((abs(r["plan_error"]) for r in rss), default=None),
            "seconds_per_step": round(per_step, 2), "timed_steps": timed, "tokens": toks,
            "losses": {str(e["step"]): e["loss"] for e in log if e["event"] == "train"}}


# ---------------------------------------------------------------- resume: kill -9 after the 20 % checkpoint

def resume_phase(args, ctx: dict) -> dict:
    """Start the same run, SIGKILL its process group once the first 20 % checkpoint is on disk, rerun it, and
    compare the losses of the steps after that checkpoint with the uninterrupted run's."""
    every = ctx["layout"]["plan"].ckpt_every
    out = ctx["work"] / "train-killed"
    cli_args = ["teacher", "train", "--config", str(ctx["recipe"]), "--output", str(out), "--max-steps", str(2 * every)]
    cmd = cli_cmd(args.processes, cli_args)
    first = cli_cmd(args.processes, [*cli_args, "--no-resume"])
    ck = out / "checkpoints" / f"step-{every:07d}"
    with (ctx["work"] / "train-killed.log").open("w") as f:
        # the run below this watcher in priority, the watcher polling every 5 ms: a small model's steps take
        # milliseconds, and a kill that lands after the last step leaves nothing to resume
        proc = subprocess.Popen(["nice", "-n", "10", *first], cwd=REPO, env=ctx["env"], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        t0 = time.monotonic()
        while not ck.is_dir() and proc.poll() is None and time.monotonic() - t0 < args.timeout:
            time.sleep(0.005)
        killed = kill_tree(proc.pid)
        proc.wait()
    if not ck.is_dir():
        raise SystemExit(f"the run ended or timed out before its checkpoint {ck.name}; see {ctx['work'] / 'train-killed.log'}")
    killed_at = max((e["step"] for e in read_log(out) if e["event"] == "train"), default=0)
    wall = run(cmd, ctx["env"], args.timeout, ctx["work"] / "train-resumed.log")
    resumed_log = (ctx["work"] / "train-resumed.log").read_text()
    full = ctx["result"]["train"]["losses"]
    after = {}
    for e in read_log(out):  # the last record of each step: the resumed run's
        if e["event"] == "train":
            after[str(e["step"])] = e["loss"]
    steps = [s for s in sorted(after, key=int) if int(s) > every]
    diffs = [abs(after[s] - full[s]) for s in steps if s in full]
    weights = _max_weight_diff(ctx["work"] / "train-full", out)
    return {"command": " ".join(cmd), "killed_after_checkpoint": ck.name, "last_step_logged_before_kill": killed_at,
            "killed_processes": len(killed),
            "resumed_from_message": f"resuming from {ck.name}" in resumed_log, "resume_wall_s": round(wall, 1),
            "steps_compared": [int(s) for s in steps], "losses_resumed": {s: after[s] for s in steps},
            "losses_uninterrupted": {s: full.get(s) for s in steps},
            "max_loss_diff": max(diffs) if diffs and len(diffs) == len(steps) else None,
            "max_final_weight_diff": weights}


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and every process below it at once (torchrun starts its workers in sessions of their own, so
    the launcher's process group does not reach them); returns once they are gone."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in tree[1:]):
        time.sleep(0.05)
    return tree


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _max_weight_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    from reldistill.teacher.artifact import ADAPTER_DIR, HEAD_FILE

    diff = 0.0
    for rel in (f"{ADAPTER_DIR}/adapter_model.safetensors", HEAD_FILE):
        wa, wb = load_file(str(a / rel)), load_file(str(b / rel))
        diff = max([diff, *((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)])
    return diff


# ---------------------------------------------------------------- score: sharded by N processes = 1 process

def make_pairs(src: str, out: Path, n: int, words: int, per_query: int = 50) -> Path:
    """``n`` short (query, product title's first ``words`` words) pairs, ``per_query`` products per query (the way
    candidates come: many per query, so the shared prefix runs once per query)."""
    import pandas as pd

    ex = pd.read_parquet(Path(src) / "shopping_queries_dataset_examples.parquet", columns=["query", "product_locale"])
    pr = pd.read_parquet(Path(src) / "shopping_queries_dataset_products.parquet", columns=["product_id", "product_title", "product_locale"])
    queries = ex[ex["product_locale"] == "us"]["query"].drop_duplicates().head(-(-n // per_query)).tolist()
    pr = pr[pr["product_locale"] == "us"].head(n)
    rows = [{"query": queries[i // per_query], "product_id": pid, "text": " ".join(str(t).split()[:words])}
            for i, (pid, t) in enumerate(zip(pr["product_id"], pr["product_title"]))]
    pd.DataFrame(rows).to_parquet(out, index=False)
    return out


def score_phase(args, ctx: dict) -> dict:
    import numpy as np
    import pandas as pd

    teacher = ctx["work"] / "train-full"
    pairs = make_pairs(args.data, ctx["work"] / "score-pairs.parquet", args.score_pairs, args.score_words)
    shard = -(-args.score_pairs // (4 * args.processes))
    out = ctx["work"] / f"scores-{args.processes}p.parquet"
    out.unlink(missing_ok=True)
    cmd = cli_cmd(args.processes, ["teacher", "score", "--teacher", str(teacher), "--pairs", str(pairs), "--out", str(out),
                                   "--dtype", "fp32", "--shard-size", str(shard), "--config", str(ctx["recipe"])])
    wall = run(cmd, ctx["env"], args.timeout, ctx["work"] / f"score-{args.processes}p.log")
    res = {args.processes: {"command": " ".join(cmd), "wall_s": round(wall, 1), "df": pd.read_parquet(out)}}
    # one process: this one, through the same function `teacher score` runs
    from reldistill.recipe import load_recipe
    from reldistill.teacher.score import score_file_stats

    one = ctx["work"] / "scores-1p.parquet"
    one.unlink(missing_ok=True)
    t0 = time.monotonic()
    recipe = load_recipe(ctx["recipe"])
    score_file_stats(teacher, pairs, one, recipe.data, recipe.score.batch_size, "fp32", shard, progress=False, runtime=Runtime.from_env())
    res[1] = {"command": "reldistill.teacher.score.score_file_stats in this process (1 process)",
              "wall_s": round(time.monotonic() - t0, 1), "df": pd.read_parquet(one)}
    a, b = res[args.processes]["df"], res[1]["df"]
    same_rows = a[["query", "product_id"]].equals(b[["query", "product_id"]])
    return {"pairs": len(a), "processes": args.processes, "same_rows_in_order": bool(same_rows),
            "max_score_diff": float(np.abs(a["teacher_score"] - b["teacher_score"]).max()),
            "max_logit_diff": float(np.abs(a["teacher_logit"] - b["teacher_logit"]).max()),
            "sharded": {k: v for k, v in res[args.processes].items() if k != "df"},
            "single": {k: v for k, v in res[1].items() if k != "df"},
            "pairs_per_s_sharded": round(len(a) / res[args.processes]["wall_s"], 2),
            "pairs_per_s_single": round(len(b) / res[1]["wall_s"], 2)}


# ---------------------------------------------------------------- export: ONNX Runtime without reldistill

# A fresh interpreter that never imports reldistill (nor torch): the export's own README recipe, as a server runs it.
ORT_CHECK = r"""
import json, re, sys, time
path, pairs = sys.argv[1], json.loads(sys.argv[2])
card = open(path + "/README.md", encoding="utf-8").read()
env = {"PATH": path}
t0 = time.monotonic()
exec(re.search(r"```python\n(.*?)```", card, re.S).group(1), env)
load_s = time.monotonic() - t0
logits, prob = env["score"](pairs)
print(json.dumps({"logits": logits.tolist(), "prob": prob.tolist(), "load_s": load_s,
                  "modules": sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("reldistill", "torch", "transformers")})}))
"""


def ort_scores(export_dir: Path, pairs: list[tuple[str, str]], env: dict, timeout: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", ORT_CHECK, str(export_dir), json.dumps(pairs)], capture_output=True,
                          text=True, timeout=timeout, env={k: v for k, v in env.items() if k != "PYTHONPATH"}, cwd="/")
    if proc.returncode:
        raise SystemExit(f"ONNX Runtime could not score the export:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parity_pairs(src: str, n: int) -> list[tuple[str, str]]:
    """``n`` pairs of different lengths (product titles cut to 2, 3, ... words, and one whole) from ``src``."""
    import pandas as pd

    ex = pd.read_parquet(Path(src) / "shopping_queries_dataset_examples.parquet", columns=["query", "product_id", "product_locale"])
    pr = pd.read_parquet(Path(src) / "shopping_queries_dataset_products.parquet", columns=["product_id", "product_title"])
    ex = ex[ex["product_locale"] == "us"].merge(pr, on="product_id").head(n)
    return [(q, str(t) if i == 0 else " ".join(str(t).split()[: 2 + i])) for i, (q, t) in enumerate(zip(ex["query"], ex["product_title"]))]


def export_phase(args, ctx: dict) -> dict:
    """``teacher export`` of the trained mlp teacher → ONNX; ONNX Runtime's scores (a fresh interpreter without
    reldistill) against ``Teacher.score_pairs`` on pairs of different lengths (padding exercised)."""
    import numpy as np

    from reldistill.teacher.export import export_teacher
    from reldistill.teacher.teacher import Teacher

    teacher_dir, out = ctx["work"] / "train-full", ctx["work"] / "export-onnx"
    t0 = time.monotonic()  # `reldistill teacher export --teacher T --out O` runs this function
    export_teacher(teacher_dir, out, force=True)
    wall = time.monotonic() - t0
    pairs = parity_pairs(args.data, args.parity_pairs)
    q, t = zip(*pairs)
    teacher = Teacher.load(teacher_dir, dtype="fp32", int8="off", runtime=Runtime.from_env())
    want_logits, want = teacher.score_logits(q, t, memo=False), teacher.score_pairs(q, t, memo=False)
    del teacher
    got = ort_scores(out, pairs, ctx["env"], args.timeout)
    files = {p.name: round(p.stat().st_size / GIB, 3) for p in out.iterdir() if p.is_file()}
    return {"command": f"reldistill teacher export --teacher {teacher_dir} --out {out} --force",
            "wall_s": round(wall, 1), "format": "onnx", "files_gib": files,
            "parity_pairs": len(pairs), "imported_in_scorer": got["modules"], "ort_load_s": round(got["load_s"], 1),
            "max_logit_diff": float(np.abs(np.array(got["logits"]) - want_logits).max()),
            "max_score_diff": float(np.abs(np.array(got["prob"]) - want).max())}


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker-rss"]:  # one process of a launched CLI command: its arguments are the CLI's
        worker(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    json_path = Path(args.json)
    result = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if any(p in PHASES for p in phases):
        ctx = setup(args, result)
        for name, fn in (("train", train_phase), ("resume", resume_phase), ("export", export_phase), ("score", score_phase)):
            if name in phases:
                t0 = time.monotonic()
                print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
                result[name] = {**fn(args, ctx), "phase_s": round(time.monotonic() - t0, 1),
                                "load_avg_1min_at_end": round(os.getloadavg()[0], 1)}
                result["checks"] = checks(result)
                json_path.parent.mkdir(parents=True, exist_ok=True)
                json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
                print(json.dumps({name: summary(result, name)}, default=str), flush=True)
    if args.doc:
        from production_doc import render

        Path(args.doc).write_text(render(result, json_path), encoding="utf-8")
    bad = [k for k, ok in result.get("checks", {}).items() if ok is False]
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED' if v is False else 'not run'}" for k, v in result.get("checks", {}).items()))
    return 1 if bad else 0


def setup(args, result: dict) -> dict:
    """Base model, data subset and recipe (each made once in ``--work``); the machine and commit into ``result``."""
    import torch

    torch.set_num_threads(args.threads)
    os.environ.update({k: v for k, v in child_env(args.threads).items() if k in ("HF_HUB_OFFLINE", "RELDISTILL_TEACHER_INT8")})
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    from reldistill.recipe import load_recipe

    seed = load_recipe(args.config)
    base = Path(args.base).resolve() if args.base else make_random_base(seed.teacher.model_config, work / "base")
    data = make_data(args.data, work / "data", args.train_pairs)
    recipe, changes = make_recipe(args, base, data, work / "recipe.yaml")
    layout = train_layout(recipe, args.processes)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    result["setup"] = {"seed_recipe": str(Path(args.config)), "changes": changes, "weights": "real" if args.base else "random",
                       "model_config": seed.teacher.model_config, "train_pairs": len(layout["ids"]),
                       "processes": args.processes, "threads_per_process": args.threads,
                       "machine": {**cpu_info(), "torch": torch.__version__, "cuda": torch.cuda.is_available()},
                       "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"),
                       "command": "python scripts/production_dryrun.py " + " ".join(sys.argv[1:])}
    return {"work": work, "recipe": recipe, "layout": layout, "env": child_env(args.threads), "result": result}


def checks(r: dict) -> dict:
    """The issue's done-when conditions, each True / False / None (phase not run)."""
    t, res, s, e = r.get("train"), r.get("resume"), r.get("score"), r.get("export")
    return {
        "parameters_exact": None if not t else t["parameters"]["lora"] == t["parameters"]["plan_lora"]
        and t["parameters"]["head"] == t["parameters"]["plan_head"],
        "rss_within_15pct_of_plan": None if not t or t["rss_max_plan_error"] is None else t["rss_max_plan_error"] <= 0.15,
        "checkpoint_at_20pct": None if not t else t["checkpoint_every"] in t["checkpoints"],
        "resume_exact_1e-5": None if not res or res["max_loss_diff"] is None else res["max_loss_diff"] <= 1e-5,
        "sharded_equals_single": None if not s else s["same_rows_in_order"] and s["max_score_diff"] <= 1e-5 and s["pairs"] >= 1000,
        "onnx_parity_1e-3": None if not e else e["max_score_diff"] <= 1e-3 and "reldistill" not in e["imported_in_scorer"],
    }


def summary(r: dict, name: str) -> dict:
    ph = r[name]
    keys = {"train": ("parameters", "rss", "seconds_per_step", "tokens"), "resume": ("steps_compared", "max_loss_diff"),
            "score": ("pairs", "max_score_diff", "pairs_per_s_single", "pairs_per_s_sharded"),
            "export": ("max_score_diff", "max_logit_diff", "files_gib")}[name]
    return {k: ph.get(k) for k in keys}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
