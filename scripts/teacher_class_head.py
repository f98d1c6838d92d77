"""Would a 4-way ESCI class head on the teacher beat its one calibrated logit? Measured on dev, written as a docs page.

    python scripts/teacher_class_head.py --teacher runs/demo/teacher --docs docs/teacher-class-head.md

Issue 28 asks for an optional E/S/C/I class head (a second head on the teacher) for ESCI Task 2 and 3, with the
ranking score kept unless dev shows the class head ranks better. This script measures such a head before anything
is built into the scoring paths: the teacher's pooled final hidden state (the input of its score head, the state
its logit is read from) for every judged pair of the train and dev splits (the recipe's carve), then a multinomial
logistic regression over E/S/C/I on those states, fitted

- on the **train** pairs (what the teacher was trained on), its class log-odds then Platt-scaled on dev folds, or
- on the **dev** pairs themselves, out of fold,

against what ships: Platt on the teacher's logit (:func:`reldistill.calibration.fit_platt`). Every figure is on
dev: out-of-fold log-loss of P(Exact) and P(Exact or Substitute) on the ranked dev queries' pairs (the pairs the
library's calibration choice judges), 5 query folds drawn 10 times (:func:`reldistill.calibration.query_folds`),
with the paired standard error over queries against the shipped map; Task 2 micro-F1 and Task 3 Substitute F1 on
all dev pairs; Task 1 nDCG@10 of the ranked dev queries. The test split is not read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("E", "S", "C", "I")
GRID_C = (0.001, 0.01, 0.1)  # inverse L2 strength of the head (features standardised on train)
FOLDS, DRAWS = 5, 10


def pooled_states(teacher, df, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(pooled final hidden state, logit) of each pair of ``df``: the input and output of the teacher's score head."""
    import torch

    from reldistill.progress import progress_bar
    from reldistill.teacher.model import hidden_size_of

    seen: dict[str, np.ndarray] = {}
    hook = teacher.model.head.register_forward_hook(lambda m, i, o: seen.__setitem__("h", i[0].float().cpu().numpy()))
    ids = teacher.encoder.encode(df["query"].astype(str).tolist(), df["text"].astype(str).tolist())
    order = np.argsort([len(r) for r in ids], kind="stable")
    states = np.zeros((len(df), hidden_size_of(teacher.model.backbone.config)), np.float32)
    logits = np.zeros(len(df), np.float32)
    try:
        with torch.inference_mode(), progress_bar(len(df), "pooled states", "pairs") as advance:
            for s in range(0, len(order), batch):
                b = order[s:s + batch]
                enc = teacher.encoder.collate([ids[i] for i in b])
                logits[b] = teacher.model(enc["input_ids"].to(teacher.device), enc["attention_mask"].to(teacher.device)).float().cpu().numpy()
                states[b] = seen["h"]
                advance(len(b))
    finally:
        hook.remove()
    return states, logits


def platt_oof(z: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """P(y) of every row from Platt maps fitted on the other folds (what ships, out of fold)."""
    from reldistill.calibration import fit_platt

    p = np.zeros(len(y))
    for f in np.unique(fold):
        a, b = fit_platt(z[fold != f], y[fold != f])
        p[fold == f] = 1.0 / (1.0 + np.exp(-(a * z[fold == f] + b)))
    return p


def head(C: float, x: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=3000).fit(x, y)


def class_probs(model, x: np.ndarray) -> np.ndarray:
    """[rows, 4] probabilities in CLASSES order (a class absent from the fit gets 0)."""
    out = np.zeros((len(x), len(CLASSES)))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def compare(name: str, dev_y: np.ndarray, probs_by_draw: list[dict[str, np.ndarray]], shipped: list[dict[str, np.ndarray]],
            judged: np.ndarray, qids: np.ndarray) -> dict:
    """Mean out-of-fold log-loss per target on the judged rows, and its paired SE against the shipped map."""
    from reldistill.calibration import _paired_se, row_log_loss

    row: dict = {"variant": name}
    for target, pos in (("p_exact", {0}), ("p_exact_or_substitute", {0, 1})):
        y = np.isin(dev_y, list(pos)).astype(float)
        mine = np.mean([row_log_loss(d[target], y) for d in probs_by_draw], axis=0)[judged]
        base = np.mean([row_log_loss(d[target], y) for d in shipped], axis=0)[judged]
        row[target] = {"log_loss": round(float(mine.mean()), 5), "delta_vs_shipped": round(float((mine - base).mean()), 5),
                       "se": round(_paired_se(mine - base, qids[judged]), 5)}
    return row


def task_figures(dev, dev_y: np.ndarray, p4: np.ndarray | None, pe: np.ndarray, pes: np.ndarray) -> dict:
    """Task 2 micro-F1, Task 3 Substitute F1 (all dev pairs) and Task 1 nDCG@10 (ranked dev queries)."""
    from reldistill.eval.calibration import esci_task_scores, esci_tasks
    from reldistill.teacher.metrics import mean_ndcg

    labels = np.array(CLASSES)[dev_y]
    if p4 is None:  # the shipped maps: most probable of E, S, C-or-I (as the eval report does)
        t = esci_tasks(pe, pes, labels)
        rank = pe
    else:
        t = esci_task_scores(np.array(CLASSES)[p4.argmax(1)], labels)
        rank = p4 @ np.array([1.0, 0.1, 0.01, 0.0])  # expected ESCI gain
    ndcg, n = mean_ndcg(dev.assign(score=rank), "score", k=10)
    return {"task2_micro_f1": round(t["task2_micro_f1"], 4), "task3_substitute_f1": round(t["task3_substitute_f1"], 4),
            "task1_ndcg10": round(ndcg, 4), "task1_queries": n}


def measure(teacher_dir: str, recipe_path: str, dtype: str, data_path: str | None = None) -> dict:
    from reldistill.calibration import query_folds, ranked_rows
    from reldistill.recipe import load_recipe
    from reldistill.settings import Runtime
    from reldistill.teacher.pairs import split_pairs
    from reldistill.teacher.teacher import Teacher

    recipe = load_recipe(recipe_path)
    data_cfg = recipe.data if data_path is None else dataclasses.replace(recipe.data, path=data_path)
    pairs = split_pairs(data_cfg)
    train, dev = pairs["train"], pairs["dev"]
    teacher = Teacher.load(teacher_dir, dtype=dtype, int8="off", runtime=Runtime())
    t0 = time.perf_counter()
    h_train, _ = pooled_states(teacher, train)
    h_dev, z_dev = pooled_states(teacher, dev)
    states_s = time.perf_counter() - t0
    y_train = np.array([CLASSES.index(x) for x in train["esci_label"].astype(str)])
    y_dev = np.array([CLASSES.index(x) for x in dev["esci_label"].astype(str)])
    mu, sd = h_train.mean(0), h_train.std(0) + 1e-6
    x_train, x_dev = (h_train - mu) / sd, (h_dev - mu) / sd
    qids = dev["query_id"].astype(str).to_numpy()
    judged = ranked_rows(qids)
    draws = [query_folds(qids, FOLDS, seed) for seed in range(DRAWS)]
    y_e, y_es = (y_dev == 0).astype(float), (y_dev <= 1).astype(float)

    shipped = [{"p_exact": platt_oof(z_dev, y_e, f), "p_exact_or_substitute": platt_oof(z_dev, y_es, f)} for f in draws]
    rows = [compare("shipped: Platt on the teacher's logit", y_dev, shipped, shipped, judged, qids)
            | task_figures(dev, y_dev, None, shipped[0]["p_exact"], shipped[0]["p_exact_or_substitute"])]
    for C in GRID_C:  # a head fitted on the train pairs' states, its class log-odds Platt-scaled on dev folds
        p4 = class_probs(head(C, x_train, y_train), x_dev)
        pe, pes = p4[:, 0], p4[:, 0] + p4[:, 1]
        oof = [{"p_exact": platt_oof(log_odds(pe), y_e, f), "p_exact_or_substitute": platt_oof(log_odds(pes), y_es, f)} for f in draws]
        rows.append(compare(f"class head fitted on train pairs (C={C}), Platt on dev", y_dev, oof, shipped, judged, qids)
                    | task_figures(dev, y_dev, p4, pe, pes))
    for C in GRID_C[:2]:  # a head fitted on the dev pairs' states, out of fold
        oof, first = [], None
        for f in draws:
            p4 = np.zeros((len(dev), len(CLASSES)))
            for k in np.unique(f):
                p4[f == k] = class_probs(head(C, x_dev[f != k], y_dev[f != k]), x_dev[f == k])
            oof.append({"p_exact": p4[:, 0], "p_exact_or_substitute": p4[:, 0] + p4[:, 1]})
            first = p4 if first is None else first
        rows.append(compare(f"class head fitted on dev pairs (C={C}), out of fold", y_dev, oof, shipped, judged, qids)
                    | task_figures(dev, y_dev, first, first[:, 0], first[:, 0] + first[:, 1]))
    return {"teacher": teacher_dir, "bundled": (Path(teacher_dir) / "bundle.json").is_file(), "recipe": recipe_path, "dtype": str(teacher.dtype).replace("torch.", ""),
            "train_pairs": len(train), "dev_pairs": len(dev), "dev_queries": int(dev["query_id"].nunique()),
            "ranked_dev_queries": int(len(set(qids[judged]))), "ranked_dev_pairs": int(judged.sum()),
            "hidden_size": int(h_dev.shape[1]), "states_seconds": round(states_s, 1), "folds": FOLDS, "draws": DRAWS,
            "rows": rows}


def beats(row: dict, target: str) -> bool:
    """A head beats the shipped map on ``target`` when its out-of-fold log-loss is lower by more than two paired SEs."""
    d = row[target]
    return d["delta_vs_shipped"] < -2 * d["se"]


def page(result: dict, prov: dict) -> str:
    r0 = result["rows"][0]
    command = prov["command"] if prov["command"].startswith("python") else f"python scripts/{prov['command']}"
    heads = result["rows"][1:]
    built = [r["variant"] for r in heads if beats(r, "p_exact") or r["task1_ndcg10"] > r0["task1_ndcg10"]]
    lines = [
        "# A 4-way ESCI class head on the teacher: measured on dev" + ("" if built else ", not built"), "",
        f"Rendered by `{command}` at commit `{str(prov['commit'])[:10]}`{' with uncommitted changes' if prov.get('dirty') else ''} "
        f"on {prov['cpu']} ({prov['cores']} CPUs); "
        f"teacher `{result['teacher']}`{' (the bundled teacher, as the demo installs it)' if result.get('bundled') else ''}, "
        f"scored in {result['dtype']}. Figures: [teacher-class-head.json](teacher-class-head.json).", "",
        "The head: multinomial logistic regression over E/S/C/I on the teacher's pooled final hidden state "
        f"({result['hidden_size']} dims, the state its relevance logit is read from), for {result['train_pairs']:,} train and "
        f"{result['dev_pairs']:,} dev pairs ({result['dev_queries']} dev queries). Log-loss: out of fold on the "
        f"{result['ranked_dev_pairs']:,} pairs of the {result['ranked_dev_queries']} ranked dev queries ({result['folds']} query "
        f"folds drawn {result['draws']} times), Δ and its paired SE over queries against the shipped map. Task 2 / Task 3 on all "
        f"dev pairs; Task 1 nDCG@10 on the ranked dev queries (the head ranks by its expected ESCI gain). The test split is not read.", "",
        "| variant | log-loss P(Exact) | Δ (SE) | log-loss P(E or S) | Δ (SE) | Task 2 micro-F1 | Task 3 Substitute F1 | Task 1 nDCG@10 (queries) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        e, es = r["p_exact"], r["p_exact_or_substitute"]
        lines.append(f"| {r['variant']} | {e['log_loss']:.4f} | {e['delta_vs_shipped']:+.4f} ({e['se']:.4f}) | {es['log_loss']:.4f} | "
                     f"{es['delta_vs_shipped']:+.4f} ({es['se']:.4f}) | {r['task2_micro_f1']:.4f} | {r['task3_substitute_f1']:.4f} | "
                     f"{r['task1_ndcg10']:.4f} ({r['task1_queries']}) |")
    best_e = min(heads, key=lambda r: r["p_exact"]["log_loss"])
    best_es = min(heads, key=lambda r: r["p_exact_or_substitute"]["log_loss"])
    best_rank = max(heads, key=lambda r: r["task1_ndcg10"])
    best_t2 = max(heads, key=lambda r: r["task2_micro_f1"])
    lines += ["", "## Reading", "",
              f"- P(Exact), the probability `min_score` thresholds: the best head ({best_e['variant']}) has log-loss "
              f"{best_e['p_exact']['log_loss']:.4f} against the shipped map's {r0['p_exact']['log_loss']:.4f} "
              f"({'lower' if best_e['p_exact']['delta_vs_shipped'] < 0 else 'not lower'}).",
              f"- P(Exact or Substitute): the best head ({best_es['variant']}) {best_es['p_exact_or_substitute']['log_loss']:.4f} "
              f"against {r0['p_exact_or_substitute']['log_loss']:.4f} (Δ {best_es['p_exact_or_substitute']['delta_vs_shipped']:+.4f}, "
              f"SE {best_es['p_exact_or_substitute']['se']:.4f}).",
              f"- Ranking: the best head's Task 1 nDCG@10 {best_rank['task1_ndcg10']:.4f} against the logit's {r0['task1_ndcg10']:.4f}; "
              "the ranking score stays the logit unless a head ranks better on dev.",
              f"- Task 2 micro-F1: the best head {best_t2['task2_micro_f1']:.4f} against {r0['task2_micro_f1']:.4f} from the shipped maps "
              "(most probable of E, S, C-or-I).",
              "- Rule: a head is built into the scoring paths (the score memo, the shared-prefix scorer, the ONNX export, `/rerank`) "
              "when it lowers the out-of-fold log-loss of P(Exact) by more than two paired SEs, or ranks better on dev. "
              + (f"Met by: {', '.join(built)}." if built else "No head meets it: the teacher keeps one logit and its Platt maps."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", help="a teacher artifact folder (e.g. runs/demo/teacher)")
    ap.add_argument("--render", default=None, help="re-render the page from this JSON of an earlier run (no measuring)")
    ap.add_argument("--recipe", default=str(REPO / "configs" / "demo-cpu.yaml"))
    ap.add_argument("--data", default=None, help="another data folder than the recipe's data.path (same dev carve)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--docs", default=None, help="write the page here (and its JSON beside it)")
    args = ap.parse_args(argv)
    from reldistill.provenance import provenance

    if args.render:
        result = json.loads(Path(args.render).read_text())
    elif args.teacher:
        result = measure(args.teacher, args.recipe, args.dtype, args.data)
        result["provenance"] = provenance()
    else:
        ap.error("pass --teacher (measure) or --render (an earlier run's JSON)")
    prov = result["provenance"]
    text = page(result, prov)
    print(text)
    if args.docs:
        out = Path(args.docs)
        out.write_text(text)
        if not args.render:
            out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
