"""Size the demo's CPU stages from the speed measured on this machine at start-up.

A few seconds of real work give this CPU's teacher pairs/s (the recipe's teacher, the scoring dtype, int8
where it would be used) and the student's training steps/s and encode docs/s. With the work the data
implies (pairs the teacher must score whatever the sizes, catalog encodes) the knobs are sized to fit
``demo.target_minutes`` (the pipeline's wall time, set-up not included): unlabeled queries to label,
student steps, dev rerank queries — all at the recipe's caps when they fit, all lowered together towards
their minimums when they do not — and the teacher's training gets what the rest leaves, between
``demo.min_teacher_minutes`` and ``demo.max_teacher_minutes``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from reldistill.data.queries import normalise_queries
from reldistill.distill.mine import with_dev_split
from reldistill.errors import UserError
from reldistill.precision import resolve_dtype, student_dtype
from reldistill.recipe.demo import DemoConfig
from reldistill.settings import Runtime
from reldistill.student.encode import encode_documents, load_student
from reldistill.teacher.int8 import INT8_MIN_SPEARMAN, int8_mode, quantize_linear_int8
from reldistill.teacher.score_memo import ScoreMemo
from reldistill.teacher.teacher import Teacher, build_cross_encoder

TEACHER_PROBE_QUERIES, TEACHER_PROBE_PER_QUERY = 2, 12  # the teacher's probe: 24 pairs, in lists like its real work
ENCODE_PROBE_DOCS = 512  # catalog products the encode probe runs (a larger sample batches like the full catalog)
MINED_KEPT = 0.56  # mined rows that are new pairs (not judged, not near-duplicates): 694 of 1,240 in the sample demo
POOL_NEW = 0.67  # rerank-pool pairs eval has not scored already (Task 1, the other pools): 940 of 1,400 in the sample demo


@dataclasses.dataclass
class Speeds:
    teacher_pairs_per_s: float  # the scoring path this run will use (int8 where predicted)
    student_steps_per_s: float
    student_docs_per_s: float  # torch (the students' dev evals while training)
    backend_docs_per_s: float | None = None  # the inference backend (mining, index, eval); None: as torch
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Work:
    """What the data and recipe cost in model work, apart from the sized knobs."""

    catalog: int  # products encoded per catalog encode
    catalog_encodes: int  # through the inference backend: mining, eval's base student when another model (the index reuses the student's saved vectors)
    training_encodes: int  # through torch: each student's dev evaluation
    fixed_pairs: int  # teacher pairs whatever the sizes (test Task-1 and rerank pools)
    pairs_per_unlabeled: float
    pairs_per_dev_rerank_query: int
    max_unlabeled: int  # min(distill.max_unlabeled_queries, sparse train queries)
    max_dev_rerank: int  # eval.dev_rerank_queries
    int8_check_encodes: int = 0  # the index's int8 gate (one more catalog encode): only where the backend is onnx
    pairs_per_judged: float = 0.0  # a fully judged train query's judged + mined pairs
    max_judged: int = 0  # min(distill.max_judged_queries, fully judged train queries)
    teacher_dev_pairs: int = 0  # a training teacher scores its dev queries' judged pairs twice (untrained, kept checkpoint)


def plan(demo: DemoConfig, speeds: Speeds, work: Work, spent_s: float = 0.0) -> dict[str, Any]:
    """The sizes that fit ``demo.target_minutes`` on ``speeds``, and the predicted seconds of each part
    (``spent_s``: already spent, e.g. measuring, counted in the target)."""
    P, S, D = speeds.teacher_pairs_per_s, speeds.student_steps_per_s, speeds.student_docs_per_s
    if not (P > 0 and S > 0 and D > 0):
        raise UserError(f"measured speeds must be positive (teacher {P:g} pairs/s, student {S:g} steps/s, {D:g} docs/s).")
    target = demo.target_minutes * 60.0
    B = speeds.backend_docs_per_s or D
    backend = speeds.detail.get("student", {}).get("backend", "onnx")  # unknown: count the int8 gate's encode
    encodes = work.catalog_encodes + (work.int8_check_encodes if backend == "onnx" else 0)
    fixed = {"measuring": spent_s, "overhead": demo.overhead_s, "catalog encodes": encodes * work.catalog / B + work.training_encodes * work.catalog / D,
             "teacher scoring (fixed pairs)": work.fixed_pairs / P}
    if demo.max_teacher_minutes > 0:  # the teacher trains here: its dev evaluations are inside its minutes
        fixed["teacher dev evaluations"] = 2 * work.teacher_dev_pairs / P
    lo = {"unlabeled_queries": min(demo.min_unlabeled_queries, work.max_unlabeled),
          "student_steps": demo.min_student_steps, "dev_rerank_queries": min(demo.min_dev_rerank_queries, work.max_dev_rerank),
          "judged_queries": min(demo.min_judged_queries, work.max_judged)}
    hi = {"unlabeled_queries": work.max_unlabeled, "student_steps": demo.max_student_steps,
          "dev_rerank_queries": work.max_dev_rerank, "judged_queries": work.max_judged}

    def sizes(f: float) -> dict[str, int]:
        return {k: int(round(lo[k] + f * (hi[k] - lo[k]))) for k in lo}

    def cost(s: dict[str, int]) -> dict[str, float]:
        return {"teacher scoring (unlabeled queries)": s["unlabeled_queries"] * work.pairs_per_unlabeled / P,
                "teacher scoring (judged train queries)": s["judged_queries"] * work.pairs_per_judged / P,
                "students (2 x steps)": 2 * s["student_steps"] / S,
                "teacher scoring (dev rerank)": s["dev_rerank_queries"] * work.pairs_per_dev_rerank_query / P}

    room = target - sum(fixed.values()) - demo.min_teacher_minutes * 60.0
    c0, c1 = sum(cost(sizes(0.0)).values()), sum(cost(sizes(1.0)).values())
    f = 1.0 if c1 <= room else 0.0 if c0 >= room or c1 <= c0 else (room - c0) / (c1 - c0)
    s = sizes(f)
    while f > 0 and sum(cost(s).values()) > room:  # rounding up may not overshoot
        f = max(f - 0.01, 0.0)
        s = sizes(f)
    parts = {**fixed, **cost(s)}
    left = target - sum(parts.values())
    teacher_s = min(max(left, demo.min_teacher_minutes * 60.0), demo.max_teacher_minutes * 60.0)
    parts["teacher training"] = teacher_s
    total = sum(parts.values())
    return {"target_s": round(target, 1), "fraction_of_caps": round(f, 3),
            "sizes": {**s, "teacher_minutes": round((teacher_s + fixed.get("teacher dev evaluations", 0.0)) / 60.0, 2)},
            "predicted_s": {k: round(v, 1) for k, v in parts.items()}, "predicted_total_s": round(total, 1),
            "fits": total <= target + 1e-6}


# ---- measuring -------------------------------------------------------------------------------------
def _rate(fn, units: int, seconds: float, at_least: int = 1) -> tuple[float, Any]:
    """(units per second of ``fn()``, its last result): one untimed warm-up call, then ``at_least`` timed calls,
    more while ``seconds`` have not passed."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < at_least or time.perf_counter() - t0 < seconds:
        out = fn()
        n += 1
    return n * units / (time.perf_counter() - t0), out


def grouped_pairs(train, queries: int, per_query: int) -> tuple[list[str], list[str]]:
    """``per_query`` judged pairs of each of ``queries`` seeded train queries that have that many: the teacher's work comes
    in such lists (a test query's judged candidates, a train query's judged and mined ones, a rerank pool), whose
    template and query tokens run once (``teacher/prefix_kv.py``). Too few such queries: the pairs of the largest lists."""
    sizes = train.groupby("query_id")["product_id"].size()
    big = sizes[sizes >= per_query]
    ids = big.sample(n=min(len(big), queries), random_state=0).index if len(big) else sizes.nlargest(queries).index
    rows = train[train["query_id"].isin(set(ids))].groupby("query_id", sort=False).head(per_query)
    return rows["query"].astype(str).tolist(), rows["text"].astype(str).tolist()


def probe_teacher(recipe, queries: list[str], texts: list[str], runtime: Runtime | None = None) -> dict[str, Any]:
    """pairs/s of the recipe's teacher (base weights, no LoRA: the same compute once merged) in its scoring dtype,
    and in int8 where ``runtime.teacher_int8`` ($RELDISTILL_TEACHER_INT8) would consider it, on the same real pairs
    (one pass each)."""
    import torch
    from scipy.stats import spearmanr

    runtime = runtime or Runtime()
    cfg = dataclasses.replace(recipe.teacher, lora_r=0)
    dtype = resolve_dtype(recipe.score.dtype, "score.dtype", runtime)
    model, tok, _ = build_cross_encoder(cfg, dtype, runtime=runtime)
    teacher = Teacher(model, tok, cfg, memo=ScoreMemo(0), runtime=runtime)
    bs = min(recipe.score.batch_size, 8)
    calls = iter([queries[:4]] + [queries] * 1000)
    few = queries[:12]  # int8: a smaller look (a prediction; the gate decides on dev)

    def score():
        q = next(calls)
        return teacher.score_logits(q, texts[:len(q)], batch_size=bs, memo=False, prior=False)

    out: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "pairs": len(queries)}
    out["pairs_per_s"], ref = _rate(score, len(queries), 0.0)  # one pass: a probe, not a benchmark
    out["used"] = out["dtype"]
    if int8_mode(runtime) == "auto" and dtype == torch.float32:
        quantize_linear_int8(teacher)
        calls = iter([few[:4]] + [few] * 1000)
        out["int8_pairs_per_s"], q8 = _rate(score, len(few), 0.0)
        out["int8_spearman"] = float(spearmanr(ref[:len(few)], q8).statistic)
        if out["int8_spearman"] >= INT8_MIN_SPEARMAN and out["int8_pairs_per_s"] > out["pairs_per_s"]:
            out["used"] = "int8 (if the gate passes on dev)"
            out["pairs_per_s_fp32"], out["pairs_per_s"] = out["pairs_per_s"], out["int8_pairs_per_s"]
    return out


def probe_student(name: str, max_seq_length: int, batch_size: int, lr: float, queries: list[str], docs: list[str],
                  seconds: float, runtime: Runtime | None = None, catalog: list[str] | None = None) -> dict[str, Any]:
    """Training steps/s (a query, positive, negative batch: forward, in-batch contrastive + margin loss, backward,
    AdamW) and encode docs/s of the base student, in the precision the students train and encode in, on ``catalog``
    (a sample of the products the catalog encodes run over; default: the first 128 of ``docs``)."""
    import torch

    runtime = runtime or Runtime()
    model = load_student(name, backend="torch", runtime=runtime)
    model.max_seq_length = max_seq_length
    dtype = student_dtype(runtime=runtime)
    b = min(batch_size, len(queries), len(docs) // 2)
    q, pos, neg = queries[:b], docs[:b], docs[b:2 * b]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)

    def embed(texts):
        feats = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in model.preprocess(texts).items()}
        return torch.nn.functional.normalize(model(feats)["sentence_embedding"], dim=-1)

    def step():
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            eq, ep, en = embed(q), embed(pos), embed(neg)
            sims = eq @ torch.cat([ep, en]).T * 20.0
            loss = torch.nn.functional.cross_entropy(sims.float(), torch.arange(b)) + \
                ((eq * ep).sum(-1) - (eq * en).sum(-1)).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    steps, _ = _rate(step, 1, seconds)
    model.eval()
    chunk = catalog or docs[:128]
    encode = lambda m: _rate(lambda: encode_documents(m, chunk), len(chunk), 0.0)[0]  # noqa: E731
    with torch.inference_mode():
        docs_s = encode(model)
    served = load_student(name, runtime=runtime)  # the inference backend index, eval and mining encode through (auto: measured once, cached)
    return {"steps_per_s": steps, "batch_size": b, "docs_per_s": docs_s, "dtype": str(dtype).removeprefix("torch."),
            "backend": getattr(served, "reldistill_backend", "torch"), "backend_docs_per_s": encode(served)}


def measure(recipe, distill_cfg, data, demo: DemoConfig, *, runtime: Runtime | None = None) -> Speeds:
    """This machine's speeds on real pairs of ``data`` (train split): teacher, then student (as ``runtime`` runs them)."""
    ex = data.examples
    train = ex[ex["split"] == "train"]
    if "text" not in train.columns:
        train = train.merge(data.products[["product_id", "text"]], on="product_id")
    train = train[train["text"].astype(str).str.strip() != ""]
    if len(train) < 4:
        raise UserError(f"{data.source} has {len(train)} train pairs with product text — the demo needs train queries "
                        f"judged on products that have a title or description.")
    sample = train.sample(n=min(len(train), 96), random_state=0)
    q, t = sample["query"].astype(str).tolist(), sample["text"].astype(str).tolist()
    tq, tt = grouped_pairs(train, TEACHER_PROBE_QUERIES, TEACHER_PROBE_PER_QUERY)
    catalog = data.products["text"].astype(str)
    catalog = catalog[catalog.str.strip() != ""]
    docs = catalog.sample(n=min(len(catalog), ENCODE_PROBE_DOCS), random_state=0).tolist()
    t0 = time.perf_counter()
    teacher = probe_teacher(recipe, tq, tt, runtime)
    student = probe_student(distill_cfg.student, distill_cfg.max_seq_length, distill_cfg.batch_size, distill_cfg.lr,
                            q, t, demo.probe_seconds, runtime, catalog=docs or None)
    return Speeds(teacher["pairs_per_s"], student["steps_per_s"], student["docs_per_s"], student["backend_docs_per_s"],
                  {"teacher": teacher, "student": student, "probe_s": round(time.perf_counter() - t0, 1)})


def work_of(data, data_cfg, distill_cfg, eval_cfg, search_cfg, int8_check: bool = True) -> Work:
    """The work the data implies, counted the way mining and eval select it."""
    ex = with_dev_split(data, data_cfg.dev_fraction, data_cfg.seed)
    held_out = set(normalise_queries(ex.loc[ex["split"] != "train", "query"]))
    train = ex[(ex["split"] == "train") & ~normalise_queries(ex["query"]).isin(held_out)]
    per_query = train.groupby("query_id")["product_id"].size()
    full = per_query[per_query >= distill_cfg.min_judged]
    sparse = int((per_query < distill_cfg.min_judged).sum())
    d = distill_cfg
    mined_full = (d.bm25_depth + d.dense_depth) * MINED_KEPT
    mined_sparse = (min(d.unlabeled_depth, d.bm25_depth) + min(d.unlabeled_depth, d.dense_depth)) * MINED_KEPT
    test = ex[ex["split"] == eval_cfg.split]
    rerank_k = max([search_cfg.rerank_k, *eval_cfg.rerank_k_grid])
    fixed = int(len(test) + test["query_id"].nunique() * search_cfg.rerank_k * POOL_NEW)
    max_judged = len(full) if d.max_judged_queries is None else min(len(full), d.max_judged_queries)
    cap = d.max_unlabeled_queries if d.max_unlabeled_queries is not None else sparse
    dev = ex[ex["split"] == "dev"]
    dev_n = dev.groupby("query_id")["product_id"].transform("size")
    trains_with_dev = d.eval_split != "none"  # a student evaluated on dev saves its catalog vectors: the index reuses them
    mining = d.dense_depth > 0 or d.drop_near_duplicates  # its encode is eval's base student's when they are one model
    encodes = int(mining) + int(not trains_with_dev) + int(not (mining and d.student == eval_cfg.base_student))
    return Work(catalog=len(data.products), catalog_encodes=encodes, training_encodes=2 * int(trains_with_dev),
                int8_check_encodes=int(int8_check),
                fixed_pairs=fixed, pairs_per_unlabeled=1 + mined_sparse, pairs_per_dev_rerank_query=int(round(rerank_k * POOL_NEW)),
                max_unlabeled=min(cap, sparse), max_dev_rerank=int(eval_cfg.dev_rerank_queries),
                pairs_per_judged=float(full.mean()) + mined_full if len(full) else 0.0, max_judged=max_judged,
                teacher_dev_pairs=int((dev_n >= 2).sum()))


def describe(p: dict[str, Any], speeds: Speeds) -> str:
    """Two lines for the console: the measured speeds and the sizes chosen."""
    t, s = speeds.detail.get("teacher", {}), speeds.detail.get("student", {})
    z = p["sizes"]
    return (f"measured: teacher {speeds.teacher_pairs_per_s:.1f} pairs/s ({t.get('used', '?')}"
            + (f"; fp32 {t['pairs_per_s_fp32']:.1f}" if "pairs_per_s_fp32" in t else "")
            + f"), student {speeds.student_steps_per_s:.2f} steps/s, {speeds.student_docs_per_s:.0f} docs/s ({s.get('dtype', '?')}), "
            f"{speeds.backend_docs_per_s or speeds.student_docs_per_s:.0f} docs/s ({s.get('backend', 'torch')})\n"
            f"sized to {p['target_s'] / 60:.1f} min: teacher {z['teacher_minutes']:.1f} min, {z.get('judged_queries', 'all')} judged and "
            f"{z['unlabeled_queries']} unlabeled train queries to label, "
            f"{z['student_steps']} steps per student, {z['dev_rerank_queries']} dev rerank queries "
            f"(predicted {p['predicted_total_s'] / 60:.1f} min{'' if p['fits'] else ', OVER the target at the minimums'})")
