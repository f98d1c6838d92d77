"""Train + evaluate teacher variants on the recipe's data (esci-extended) and render docs/teacher-variants.md.

Each variant is the demo recipe (configs/demo-cpu.yaml) with a few teacher:/train: overrides. For each
one: `train_teacher` (dev Task-1 nDCG@10 over whole dev queries picks the checkpoint), then
`evaluate_teacher` on the test split (Task-1: each query's judged candidates, nDCG@10 with the ESCI
gains). Rows are appended to <out>/results.jsonl; the markdown table is rebuilt from all rows.
Baselines (BM25 and the base MiniLM on the same judged pairs) come from `--baselines`.

    .venv/bin/python scripts/teacher_variants.py --variants lm-zeroshot lm-listwise-top4 ...
    .venv/bin/python scripts/teacher_variants.py --baselines
    .venv/bin/python scripts/teacher_variants.py --table-only --docs docs/teacher-variants.md
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from reldistill.recipe.teacher import LM_TEMPLATE
from reldistill.settings import Runtime

REPO = Path(__file__).resolve().parents[1]
PAGE_INTRO = """# Teacher variants (ESCI Task 1: rank each query's judged candidates)

Each row is a run on esci-extended: dev = the whole multi-judged dev queries carved from train (stratified by
judged count), test = the 130 test queries (chooses nothing). nDCG@10 with the ESCI gains (E=1, S=0.1, C=0.01,
I=0). Dev figures and the baselines use `teacher/metrics.py` (ties broken pessimistically, which lowers BM25's
many tied zero scores); a row whose test figure comes from an eval report (`test_source` in results.jsonl)
uses `reldistill eval`'s Task-1 table for the same teacher and queries. "train wall min" is the training's
wall time on the CPU named below (model load and dev evaluations included). A row that started from a trained
teacher (`train.init_from`) shows that teacher's dev figure as "start" where others show the untrained model's.
"""
ABLATE = {"epochs": 0.5, "include_sparse": True, "cpu_threads": 2, "max_minutes": None, "seed": 0}
LM = {"model": "smollm2-135m", "head": "lm", "template": None, "lora_r": 16, "lora_alpha": 32, "max_length": 96}
VARIANTS: dict[str, dict] = {
    # configs/demo-cpu.yaml's teacher exactly as `reldistill demo` trains it (its own minutes budget)
    "demo": {"teacher": {}, "train": {}},
    # the demo recipe as it was before head lm: MLP head, pointwise BCE, LoRA on all layers, 4 min
    "mlp-bce-all": {"teacher": {"model": "smollm2-135m", "head": "mlp", "head_hidden": 256, "max_length": 64,
                                "template": "Query: {query}\nProduct: {text}\nRelevant:"},
                    "train": {"loss": "bce", "group_size": 0, "batch_size": 16, "epochs": 1, "include_sparse": True,
                              "checkpoint_fraction": 0.2}},
    # LM yes/no head, untrained: the backbone's zero-shot judgement
    "lm-zeroshot": {"teacher": LM, "train": {"max_steps": 0, "train_layers": 4, "include_sparse": False}},
    # the same, all layers through the full model (any backbone: no prefix slicing)
    "lm-zeroshot-full": {"teacher": LM, "train": {"max_steps": 0, "include_sparse": False}},
    "lm-bce-all": {"teacher": LM, "train": {}},
    "lm-bce-top4": {"teacher": LM, "train": {"train_layers": 4, "epochs": 4, "max_minutes": 14, "include_sparse": False,
                                             "checkpoint_fraction": 0.5}},
    "lm-listwise-top4": {"teacher": LM, "train": {"train_layers": 4, "epochs": 4, "max_minutes": 14, "loss": "listwise",
                                                  "bce_weight": 0.5, "group_size": 8, "batch_size": 4, "include_sparse": False,
                                                  "checkpoint_fraction": 0.5}},
    "lm-ranknet-top4": {"teacher": LM, "train": {"train_layers": 4, "epochs": 4, "max_minutes": 14, "loss": "ranknet",
                                                 "bce_weight": 0.5, "group_size": 8, "batch_size": 4, "include_sparse": False,
                                                 "checkpoint_fraction": 0.5}},
    "lm-listwise-top8": {"teacher": LM, "train": {"train_layers": 8, "epochs": 4, "max_minutes": 14, "loss": "listwise",
                                                  "bce_weight": 0.5, "group_size": 8, "batch_size": 4, "include_sparse": False,
                                                  "checkpoint_fraction": 0.5}},
    "mlp-listwise-top4": {"teacher": {"max_length": 96}, "train": {"train_layers": 4, "epochs": 4, "max_minutes": 14,
                                                                  "loss": "listwise", "bce_weight": 0.5, "group_size": 8,
                                                                  "batch_size": 4, "include_sparse": False, "checkpoint_fraction": 0.5}},
    # one-axis ablations of the demo recipe (Gemma 3 270M, top 8 layers on the cached prefix, single-judged queries
    # in the BCE term), each the same 0.5 epoch from the untrained model with the same seed and the same query-group
    # batches, so only the named axis differs; the cached prefix (train, dev, test) is shared by all of them
    **{f"ablate-{axis}": {"teacher": t, "train": {**ABLATE, **tr}} for axis, t, tr in (
        ("untrained", {}, {"max_steps": 0}),
        ("demo", {}, {}),                                              # LM yes/no head, listwise + 0.5 BCE, LoRA on all linear modules
        ("bce", {}, {"loss": "bce"}),                                  # pointwise BCE on the soft labels only
        ("listwise", {}, {"bce_weight": 0.0}),                         # listwise softmax CE only
        ("mlp-head", {"head": "mlp", "template": LM_TEMPLATE}, {}),    # MLP score head on the last token (same prompt)
        ("qv", {"target_modules": ["q_proj", "v_proj"]}, {}),          # LoRA on q_proj / v_proj only
        ("smollm2", {"model": "smollm2-135m"}, {}),                     # SmolLM2-135M as the backbone (top 8 of 30 layers)
        ("lr-high", {}, {"lr": 6.0e-4}),                               # 3x the recipe's LoRA learning rate (2e-4)
        ("lr-low", {}, {"lr": 6.7e-5}),                                # 1/3 of it
        ("top4", {}, {"train_layers": 4}),                             # LoRA on the top 4 layers (a deeper cached prefix)
    )},
}


def recipe_for(base: dict, name: str, extra: dict | None = None) -> dict:
    r = copy.deepcopy(base)
    v = VARIANTS[name]
    for sec in ("data", "teacher", "train"):
        r[sec] = {**r.get(sec, {}), **v.get(sec, {}), **((extra or {}).get(sec, {}))}
    r["train"].setdefault("eval_max_queries", None)
    r["train"]["eval_max_pairs"] = None  # dev: every whole dev query that nDCG can rank
    return r


def run_variant(name: str, base: dict, out_root: Path, extra: dict | None = None, tag: str = "") -> dict:
    from reldistill.recipe import load_recipe
    from reldistill.teacher.train import train_teacher

    key = name + (f"@{tag}".replace("/", "_") if tag else "")
    vdir = out_root / key
    vdir.mkdir(parents=True, exist_ok=True)
    recipe = recipe_for(base, name, extra)
    rpath = vdir / "recipe.yaml"
    rpath.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    tdir = train_teacher(load_recipe(rpath), vdir / "teacher", resume=False, progress=False, runtime=Runtime.from_env())
    return row_for_artifact(tdir, key, out_root, f"python scripts/teacher_variants.py --variants {name}" + (f" --set {tag}" if tag else ""))


def cached_model(tdir: Path, rpath: Path, trainables: Path | None = None):
    """(model, encoder, recipe, accelerator, cache key prefix) of the artifact ``tdir`` built for the cached-prefix
    path; ``trainables``: a training checkpoint's trainable.safetensors loaded over it (another budget, same run)."""
    import torch
    from accelerate import Accelerator
    from safetensors.torch import load_file

    from reldistill.precision import reset_accelerate_state
    from reldistill.precision import resolve_dtype
    from reldistill.recipe import load_recipe
    from reldistill.teacher.artifact import load_init_weights
    from reldistill.teacher.inputs import PairEncoder
    from reldistill.teacher.teacher import build_cross_encoder

    r = load_recipe(rpath)
    tc, tr = r.teacher, r.train
    dtype = resolve_dtype(tr.precision, runtime=Runtime.from_env())
    reset_accelerate_state(runtime=Runtime.from_env())
    acc = Accelerator(mixed_precision="bf16" if dtype == torch.bfloat16 else "no", cpu=True)
    model, tok, resolved = build_cross_encoder(tc, dtype, train_layers=tr.train_layers, runtime=Runtime.from_env())
    load_init_weights(model, tc, tdir)  # the artifact's LoRA and head, as train.init_from loads them
    if trainables is not None:
        state = load_file(str(trainables))
        missing = set(state) - {n for n, _ in model.named_parameters()}
        if missing:
            sys.exit(f"{trainables} does not fit {tdir}'s model ({len(missing)} unknown tensors, e.g. {sorted(missing)[0]})")
        model.load_state_dict(state, strict=False)
    model.eval()
    enc = PairEncoder(tok, tc.template, tc.max_length, tc.padding_side)
    return model, enc, r, acc, f"{resolved.hub_id or resolved.path}:{resolved.gguf_file}"


def cached_probs(loaded, df):
    """The dev evaluator run on ``df``'s judged pairs (``.last_probs``: the teacher's probabilities, ``.metrics``:
    Task-1 metrics) through the cached frozen prefix where the recipe has one (train.train_layers > 0: the lower layers carry no
    LoRA, so their states are the same for every variant with the same split; tests/test_teacher_ranking.py checks
    cached == uncached)."""
    from reldistill.gguf_cache import cache_root
    from reldistill.teacher.model import num_layers
    from reldistill.teacher.prefix_cache import cache_key, prefix_states
    from reldistill.teacher.train import DevEvaluator

    model, enc, r, acc, base_id = loaded
    ev = DevEvaluator(df, enc, r.train.eval_batch_size)
    if r.train.train_layers:  # train_layers 0: LoRA on every layer, nothing frozen to cache (a cache keyed by the base would be wrong)
        split = num_layers(model.backbone) - r.train.train_layers
        pdtype = next(model.backbone.parameters()).dtype
        key = cache_key(base_id, split, pdtype, ev.ids)
        ev.use_prefix(prefix_states(model, enc, ev.ids, split, r.train.eval_batch_size,
                                    cache_root(runtime=Runtime.from_env()) / "teacher-prefix" / f"{key}.safetensors", acc.autocast), split)
    ev.metrics = ev(model, acc)
    return ev


def cached_test_eval(loaded, rpath: Path) -> dict:
    """Test Task-1 metrics of the loaded teacher (:func:`cached_model`) through the cached frozen prefix: the same
    numbers as `evaluate_teacher`, minus the repeated prefix forward."""
    from reldistill.recipe import load_recipe
    from reldistill.teacher.metrics import label_distributions
    from reldistill.teacher.pairs import split_pairs

    df = split_pairs(load_recipe(rpath).data)["test"]
    ev = cached_probs(loaded, df)
    return {"metrics": ev.metrics, "by_label": label_distributions(df.assign(teacher_score=ev.last_probs))}


def cached_dev_per_query(loaded, rpath: Path) -> dict[str, float]:
    """{dev query id: nDCG@10} of the loaded teacher on the dev queries its training chose on (the paired
    comparisons of the ablation table)."""
    from reldistill.recipe import load_recipe
    from reldistill.teacher.metrics import per_query_ndcg
    from reldistill.teacher.train import load_train_data

    df = load_train_data(load_recipe(rpath)).dev
    ev = cached_probs(loaded, df)
    return {q: round(v, 6) for q, v in per_query_ndcg(df.assign(teacher_score=ev.last_probs), k=10).items()}


def artifact_recipe(tdir: Path, path: Path) -> tuple[Path, dict]:
    """The recipe an artifact was trained with (its manifest's data/teacher/train), written to ``path``: (path, recipe)."""
    m = json.loads((tdir / "manifest.json").read_text())
    recipe = {"data": m["data"], "teacher": m["teacher"], "train": {k: v for k, v in m["train"].items() if k != "bundled"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path, recipe


def test_from_report(tdir: Path, run: Path) -> dict:
    """The teacher's test Task-1 nDCG@10 from ``run``'s eval report, when the run's teacher is this artifact
    (the same manifest): eval already scored every test pair with it, so nothing is scored twice."""
    same = (run / "teacher" / "manifest.json").read_bytes() == (tdir / "manifest.json").read_bytes()
    if not same:
        sys.exit(f"{run}/teacher is not the artifact {tdir} (manifests differ) — evaluate it instead (drop --test-report).")
    report = json.loads((run / "report.json").read_text())
    t1 = report["task1"]["teacher"]
    return {"metrics": {"ndcg@10": t1["nDCG@10"], "ndcg_queries": report["n_queries"]}, "by_label": {}, "source": str(run / "report.json")}


def row_for_artifact(tdir: Path, name: str, out_root: Path, command: str, report_run: Path | None = None) -> dict:
    """A table row for an existing teacher artifact (e.g. the bundled one): dev from its manifest, test via the cache
    (or from ``report_run``'s eval report when that run's teacher is this artifact)."""
    m = json.loads((tdir / "manifest.json").read_text())
    rpath, recipe = artifact_recipe(tdir, out_root / name / "artifact-recipe.yaml")
    t1 = time.monotonic()
    dev_per_query = None
    if report_run is not None:
        test = test_from_report(tdir, report_run)
    elif recipe["train"].get("train_layers"):
        loaded = cached_model(tdir, rpath)
        test, dev_per_query = cached_test_eval(loaded, rpath), cached_dev_per_query(loaded, rpath)
    else:
        from reldistill.teacher.evaluate import evaluate_teacher

        test = evaluate_teacher(tdir, split="test", progress=False, runtime=Runtime.from_env())
    tc, tr = recipe["teacher"], recipe["train"]
    row = {
        "variant": name, "backbone": tc.get("model"), "head": tc.get("head"),
        "loss": tr.get("loss", "bce") + (f"+{tr['bce_weight']}bce" if tr.get("loss", "bce") != "bce" and tr.get("bce_weight") else ""),
        "group_size": tr.get("group_size", 0), "train_layers": tr.get("train_layers", 0) or "all",
        "init_from": tr.get("init_from"), "epochs": m["epochs_done"], "steps": m["steps"], "chosen_step": m["chosen_step"],
        "dev_ndcg10": (m.get("dev_metrics") or {}).get("ndcg@10"), "dev_ndcg10_untrained": (m.get("dev_metrics_untrained") or {}).get("ndcg@10"),
        "dev_queries": m.get("dev_queries"), "test_ndcg10": test["metrics"]["ndcg@10"], "test_queries": test["metrics"]["ndcg_queries"],
        "train_wall_min": m.get("train_minutes"), "prefix_cache_s": m.get("prefix_cache_s"),
        "test_eval_wall_min": round((time.monotonic() - t1) / 60, 2), "precision": m.get("precision"), "threads": _threads(),
        "by_label_test_mean": {k: round(v["mean"], 4) for k, v in test["by_label"].items()}, "command": command,
        "test_source": test.get("source", "evaluate_teacher"), "cpu": _cpu_name(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_flags": _cpu_flags(), "dev_log": _dev_log(tdir), "dev_per_query": dev_per_query,
    }
    with (out_root / "results.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print("ROW " + json.dumps({k: v for k, v in row.items() if k != "dev_per_query"}), flush=True)
    return row


def zeroshot_row(model: str, base: dict, out_root: Path) -> dict:
    """Dev and test Task-1 nDCG@10 of an untrained ``head: lm`` teacher (no LoRA, no training): the backbone's own judgement."""

    from reldistill.config import DataConfig, from_dict
    from reldistill.precision import resolve_dtype
    from reldistill.teacher.metrics import evaluate_scores
    from reldistill.teacher.pairs import cap_queries, split_pairs
    from reldistill.teacher.teacher import Teacher, build_cross_encoder

    cfg = _zeroshot_config(model)
    pairs = split_pairs(from_dict(DataConfig, base["data"], "data"))
    t0 = time.monotonic()
    net, tok, _ = build_cross_encoder(cfg, resolve_dtype("auto", runtime=Runtime.from_env()), runtime=Runtime.from_env())
    teacher = Teacher(net, tok, cfg, runtime=Runtime.from_env())
    res, secs = {}, {}
    for split in ("dev", "test"):
        df = cap_queries(pairs[split], None)
        t1 = time.monotonic()
        res[split] = evaluate_scores(df, teacher.score_pairs(df["query"].tolist(), df["text"].tolist()))
        secs[split] = round(time.monotonic() - t1, 1)
    row = {"variant": f"lm-zeroshot:{model}", "backbone": model, "head": "lm", "loss": "–", "group_size": 0, "train_layers": "none",
           "epochs": 0.0, "dev_ndcg10": res["dev"]["ndcg@10"], "dev_queries": res["dev"]["ndcg_queries"],
           "test_ndcg10": res["test"]["ndcg@10"], "test_queries": res["test"]["ndcg_queries"], "train_wall_min": 0.0,
           "score_seconds": secs, "pairs": {k: res[k]["pairs"] for k in res}, "precision": str(next(net.parameters()).dtype),
           "threads": _threads(), "total_wall_min": round((time.monotonic() - t0) / 60, 2),
           "conditions": f"1-min load average {os.getloadavg()[0]:.2f} at the end (2 cores: above ~2.2 the seconds are not a speed figure)",
           "command": f"python scripts/teacher_variants.py --zeroshot {model}",
           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with (out_root / "results.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print("ROW " + json.dumps(row), flush=True)
    return row


def ensemble_rows(model: str, base: dict, out_root: Path, weights=(0.0, 0.25, 0.5, 0.75, 1.0)) -> None:
    """The untrained ``head: lm`` teacher blended with the base MiniLM on the same judged pairs: per query, each
    score z-normalised, then w x LLM + (1 - w) x MiniLM. Dev picks w (test chooses nothing); every w is a row."""
    from reldistill.config import DataConfig, from_dict
    from reldistill.precision import resolve_dtype
    from reldistill.teacher.metrics import mean_ndcg
    from reldistill.teacher.pairs import cap_queries, split_pairs
    from reldistill.teacher.teacher import Teacher, build_cross_encoder
    from reldistill.student.encode import load_student

    cfg = _zeroshot_config(model)
    pairs = split_pairs(from_dict(DataConfig, base["data"], "data"))
    net, tok, _ = build_cross_encoder(cfg, resolve_dtype("auto", runtime=Runtime.from_env()), runtime=Runtime.from_env())
    teacher, st = Teacher(net, tok, cfg, runtime=Runtime.from_env()), load_student(base.get("eval", {}).get("base_student", "minilm-l6"), runtime=Runtime.from_env())
    res: dict[float, dict] = {w: {} for w in weights}
    for split in ("dev", "test"):
        df = cap_queries(pairs[split], None)
        q = st.encode(df["query"].tolist(), normalize_embeddings=True, batch_size=64)
        t = st.encode(df["text"].tolist(), normalize_embeddings=True, batch_size=64)
        df = df.assign(llm=np.asarray(teacher.score_pairs(df["query"].tolist(), df["text"].tolist()), dtype=np.float64),
                       minilm=np.sum(q * t, axis=1))
        z = {c: df.groupby("query_id")[c].transform(lambda x: (x - x.mean()) / (x.std() + 1e-9)) for c in ("llm", "minilm")}
        for w in weights:
            res[w][split] = mean_ndcg(df.assign(teacher_score=w * z["llm"] + (1 - w) * z["minilm"]), k=10)
    best = max(weights, key=lambda w: res[w]["dev"][0])
    with (out_root / "results.jsonl").open("a", encoding="utf-8") as f:
        for w in weights:
            row = {"variant": f"ensemble:{model}+minilm w={w:g}" + (" (dev pick)" if w == best else ""),
                   "backbone": model, "head": "lm", "loss": "–", "group_size": 0, "train_layers": "none", "epochs": 0.0,
                   "dev_ndcg10": res[w]["dev"][0], "dev_queries": res[w]["dev"][1], "test_ndcg10": res[w]["test"][0],
                   "test_queries": res[w]["test"][1], "train_wall_min": 0.0, "llm_weight": w,
                   "command": f"python scripts/teacher_variants.py --ensemble {model}",
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            f.write(json.dumps(row) + "\n")
            print("ROW " + json.dumps(row), flush=True)


def _zeroshot_config(model: str):
    from reldistill.recipe.teacher import TeacherConfig

    return TeacherConfig(model=model, head="lm", max_length=LM["max_length"], lora_r=0)


def _cpu_name() -> str:
    """The CPU's model name (what `lscpu` prints as "Model name")."""
    from reldistill.precision import cpu_info

    return cpu_info()["model"]


def _cpu_flags() -> list[str]:
    """The SIMD / matrix flags of this CPU that change the kernels (reldistill.precision.cpu_info)."""
    from reldistill.precision import cpu_info

    return cpu_info()["flags"]


def _dev_log(tdir: Path) -> list[list]:
    """[[step, dev nDCG@10], ...] of every dev evaluation in the artifact's training log (the untrained model at step 0)."""
    log = tdir / "train_log.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
    return [[r["step"], round(r["dev_ndcg@10"], 4)] for r in rows if r.get("event") == "eval" and r.get("dev_ndcg@10") is not None]


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def baselines(base: dict, out_root: Path) -> None:
    """BM25 (catalog index) and the base MiniLM (cosine) on the same dev/test judged pairs, same nDCG@10."""
    from reldistill.config import DataConfig, from_dict
    from reldistill.data import load_esci
    from reldistill.index.lexical import BM25Index
    from reldistill.student import load_student
    from reldistill.teacher.metrics import mean_ndcg
    from reldistill.teacher.pairs import cap_queries, split_pairs

    cfg = from_dict(DataConfig, base["data"], "data")
    pairs = split_pairs(cfg)
    products = load_esci(cfg).products
    bm25 = BM25Index.build(products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist())
    st = load_student(base.get("eval", {}).get("base_student", "minilm-l6"), backend="torch", runtime=Runtime.from_env())
    for system in ("bm25", "minilm-base"):
        row = {"variant": f"baseline:{system}", "command": "python scripts/teacher_variants.py --baselines"}
        for split in ("dev", "test"):
            df = cap_queries(pairs[split], None)
            if system == "bm25":
                s = bm25.score_pairs(df["query"].tolist(), df["product_id"].astype(str).tolist())
            else:
                q = st.encode(df["query"].tolist(), normalize_embeddings=True, batch_size=64)
                t = st.encode(df["text"].tolist(), normalize_embeddings=True, batch_size=64)
                s = np.sum(q * t, axis=1)
            v, n = mean_ndcg(df.assign(teacher_score=s), k=10)
            row[f"{split}_ndcg10"], row[f"{split}_queries"] = v, n
        with (out_root / "results.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print("ROW " + json.dumps(row), flush=True)


def table(out_root: Path) -> str:
    rows = {}
    for line in (out_root / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[r["variant"]] = r  # the latest run of each variant
    head = ("| variant | backbone | head | loss | group | trained layers | epochs | dev nDCG@10 (queries) | "
            "test nDCG@10 (queries) | train wall min |\n|---|---|---|---|---|---|---|---|---|---|\n")
    f = _f4
    lines = []
    for r in rows.values():
        if r["variant"].startswith("baseline:"):
            lines.append(f"| {r['variant']} | – | – | – | – | – | – | {f(r['dev_ndcg10'])} ({r['dev_queries']}) | "
                         f"{f(r['test_ndcg10'])} ({r['test_queries']}) | – |")
        else:
            untrained = not r["epochs"]
            kept = r.get("chosen_step")
            epochs = f"{r['epochs']}" + (f" (kept step {kept} of {r['steps']})" if kept is not None and r.get("steps") and kept != r["steps"] else "")
            lines.append(f"| {r['variant'].replace(',', ', ')} | {Path(str(r['backbone'])).name} | {r['head']} | "
                         f"{'– (untrained)' if untrained else r['loss']} | {r['group_size'] or '–'} | "
                         f"{'none' if untrained else r['train_layers']} | {epochs} | {f(r['dev_ndcg10'])} ({r['dev_queries']}"
                         f"{'' if untrained or r.get('dev_ndcg10_untrained') is None else ('; start ' if r.get('init_from') else '; untrained ') + f(r['dev_ndcg10_untrained'])}) | "
                         f"{f(r['test_ndcg10'])} ({r['test_queries']}) | {r['train_wall_min']} |")
    cmds = "\n".join(f"- {r['variant']}: `{r['command']}`"
                     + (f" (scoring: dev {r['score_seconds']['dev']} s / {r['pairs']['dev']} pairs, test {r['score_seconds']['test']} s / "
                        f"{r['pairs']['test']} pairs)" if r.get("score_seconds") else "")
                     + (f"; {r['conditions']}" if r.get("conditions") else "") for r in rows.values())
    text = head + "\n".join(lines) + ablation_table(rows) + "\n\nCommands (each row's, from results.jsonl):\n\n" + cmds + "\n"
    (out_root / "table.md").write_text(text, encoding="utf-8")
    return text


def _f4(v: float | None) -> str:
    """A figure to 4 decimals for the tables ("–" where there is none)."""
    return "–" if v is None else f"{v:.4f}"


def ablation_table(rows: dict[str, dict], base: str = "ablate-demo") -> str:
    """The one-axis ablations (variants ablate-*) against ``base``, paired over the same dev queries (t-test)."""
    from reldistill.eval.significance import paired_test

    abl = {k: r for k, r in rows.items() if k.startswith("ablate-") and r.get("dev_per_query")}
    if base not in abl:
        return ""
    ref, f = abl[base], _f4
    out = [f"\n\n**One-axis ablations** (`--variants ablate-...`): the demo recipe from the untrained model for "
           f"{ref['epochs']} epoch ({ref.get('steps')} steps), the same seed and query-group batches, one axis changed; every run on "
           f"{ref['cpu']} ({', '.join(ref.get('cpu_flags') or []) or 'no SIMD flags read'}), {ref['precision']}, "
           f"{ref['threads']} threads. Δ is against `{base}` over the same dev queries (paired t-test); the "
           "kept checkpoint is the one dev chose (step 0 = the untrained model). Test chooses nothing.\n",
           "| variant | dev nDCG@10 by step | kept | Δ dev (p, queries) | test nDCG@10 | Δ test | train wall min |",
           "|---|---|---|---|---|---|---|"]
    for k, r in abl.items():
        qs = sorted(set(r["dev_per_query"]) & set(ref["dev_per_query"]))
        t = paired_test(np.array([ref["dev_per_query"][q] for q in qs]), np.array([r["dev_per_query"][q] for q in qs]))
        curve = ", ".join(f"{st}: {v:.4f}" for st, v in r.get("dev_log") or [])
        delta = "–" if k == base else f"{t['delta']:+.4f} (p {t['p_value']:.2f}, {len(qs)})"
        dtest = "–" if k == base else f"{r['test_ndcg10'] - ref['test_ndcg10']:+.4f}"
        wall = (f"0 steps ({r['train_wall_min']}: model load, the shared prefix cache built in {r['prefix_cache_s'] / 60:.1f}, "
                "dev eval)" if not r.get("steps") and r.get("prefix_cache_s") else r["train_wall_min"])
        out.append(f"| {k} | {curve} | {r.get('chosen_step')} | {delta} | {f(r['test_ndcg10'])} ({r['test_queries']}) | "
                   f"{dtest} | {wall} |")
    return "\n".join(out)


def write_docs(path: Path, text: str, command: str, out_root: Path) -> None:
    """The table as a docs page, naming the command that rendered it, the commit and the CPU."""
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    intro = (PAGE_INTRO + f"\nRendered by `{command}` at commit `{commit}` on {_cpu_name()} "
             f"({os.cpu_count()} CPUs) from `runs/teacher-variants/results.jsonl` (a copy: [teacher-variants.jsonl](teacher-variants.jsonl)).\n\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(intro + text, encoding="utf-8")
    path.with_suffix(".jsonl").write_text((out_root / "results.jsonl").read_text(), encoding="utf-8")  # the rows, kept beside the page


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "demo-cpu.yaml"))
    ap.add_argument("--out", default=str(REPO / "runs" / "teacher-variants"))
    ap.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS))
    ap.add_argument("--set", default="", help="extra overrides as section.key=value,... (e.g. train.epochs=8)")
    ap.add_argument("--baselines", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--zeroshot", nargs="*", default=[], help="backbones to score untrained with head lm (dev + test)")
    ap.add_argument("--ensemble", nargs="*", default=[], help="backbones whose untrained head-lm score is blended with the base MiniLM")
    ap.add_argument("--artifact", nargs=3, metavar=("DIR", "NAME", "COMMAND"),
                    help="add a row for an existing teacher artifact (e.g. the bundled one) and the command that made it")
    ap.add_argument("--test-report", default=None, help="with --artifact: a run whose eval report scored this teacher on test")
    ap.add_argument("--docs", default=None, help="also write the table as this markdown page (with the commit and CPU)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(a.threads)
    os.chdir(REPO)
    out_root = Path(a.out)
    out_root.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(Path(a.config).read_text())
    extra: dict = {}
    for kv in filter(None, re.split(r",(?![^\[]*\])", a.set)):  # commas inside [..] belong to a list value
        k, v = kv.split("=", 1)
        sec, key = k.split(".", 1)
        extra.setdefault(sec, {})[key] = yaml.safe_load(v)
    if not a.table_only:
        if a.baselines:
            baselines(base, out_root)
        for name in a.variants:
            run_variant(name, base, out_root, extra, a.set)
        for model in a.zeroshot:
            zeroshot_row(model, base, out_root)
        for model in a.ensemble:
            ensemble_rows(model, base, out_root)
        if a.artifact:
            row_for_artifact(Path(a.artifact[0]), a.artifact[1], out_root, a.artifact[2],
                             Path(a.test_report) if a.test_report else None)
    text = table(out_root)
    print(text)
    if a.docs:
        write_docs(Path(a.docs), text, " ".join(["python", *sys.argv]), out_root)


if __name__ == "__main__":
    main()
