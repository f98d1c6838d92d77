"""Run the data layer, candidate mining and the index build at full-ESCI size and measure each stage.

    python scripts/scale_run.py --work /tmp/reldistill-scale             # 2.6M examples, 1.8M products
    python scripts/scale_run.py --work /tmp/s --examples 20000 --products 15000   # a quick rehearsal

Each stage runs as its own subprocess (under ``nice``); its wall time, CPU time and peak RSS come from
``os.wait4``'s resource usage of that process (reaped descendants included). Stages: generate the set
(scripts/make_esci_scale.py), ``reldistill data stats``, the dev split, the stand-in encoder, BM25 over
every product (batched search against bm25s's one-query-at-a-time retrieve), ``reldistill distill mine``
(BM25 + dense), ``reldistill index build`` with hnsw and with ivfpq, and the recall of
HNSW / IVF-PQ against flat on the real MiniLM student's embeddings of the ESCI sample (recipe settings
and a sweep of the search knob). Results go to ``<work>/scale.json`` and ``<work>/scale.md``; a rerun
skips stages that finished (``--redo`` runs them again). Heavy stages wait for free memory first.

The dense side at 1.8M products uses a stand-in encoder so it fits a CPU session: ``StaticEmbedding``
over MiniLM-L6's own tokenizer and token-embedding table, reduced by PCA to ``--standin-dim`` (96)
dimensions, mean-pooled and L2-normalised (no transformer layers). Its vectors exercise memory and
FAISS like a student's, but its rankings are not a student's; recall is measured on the real student.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from reldistill.settings import Runtime

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "demo-cpu.yaml"
SAMPLE = REPO.parent / "shared" / "data" / "esci-sample"
HEAVY_MIN_FREE_GIB = 10.0  # a heavy stage starts only with this much memory available (the machine is shared)
SIMD_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


# ---- measuring a stage ---------------------------------------------------------------------------
def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def wait_for_memory(min_gib: float, timeout_s: float = 900, poll_s: float = 30) -> float:
    """MemAvailable in GiB once it is at least ``min_gib``; SystemExit when it stays lower for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (free := mem_available_gib()) < min_gib:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {free:.1f} GiB memory available after {timeout_s:.0f} s (need {min_gib:.0f}) — "
                             "the machine is busy; rerun later (finished stages are kept).")
        print(f"  waiting: {free:.1f} GiB available, need {min_gib:.0f}", flush=True)
        time.sleep(poll_s)
    return free


def shown(cmd: list[str]) -> str:
    """The command as a user types it from the repository root."""
    return shlex.join(os.path.relpath(c, REPO) if c.startswith(str(REPO) + os.sep) else c for c in cmd)


# Runs the stage as ITS child and reports that child's rusage: Linux keeps a process's peak-RSS mark across
# exec, so a stage forked straight from a big parent (a test session, a notebook) would report the parent's
# memory as its own; forked from this few-MiB launcher it reports its own. SIGTERM is passed on to the stage.
_LAUNCHER = """import json, os, signal, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
while True:
    try:
        _, status, ru = os.wait4(pid, 0)
        break
    except InterruptedError:
        continue
with open(sys.argv[1], "w") as f:
    json.dump({"status": status, "utime": ru.ru_utime, "stime": ru.ru_stime, "maxrss_kib": ru.ru_maxrss}, f)
"""


def run_stage(name: str, cmd: list[str], logs: Path, env: dict | None = None, nice: int = 5,
              timeout_s: float | None = None) -> dict:
    """Run ``cmd`` (stdout → ``<logs>/<name>.out``, stderr → ``.log``); wall, CPU and peak RSS of the process.

    A stage still running after ``timeout_s`` is stopped (SIGTERM) and marked ``stopped``: its figures are
    then those of the part that ran (peak RSS so far). The figures are the stage process's own (and its
    reaped children's), whatever the size of the process that calls this.
    """
    logs.mkdir(parents=True, exist_ok=True)
    full = (["nice", "-n", str(nice)] if nice else []) + cmd
    usage_file = logs / f"{name}.rusage.json"
    usage_file.unlink(missing_ok=True)
    load = Path("/proc/loadavg").read_text().split()[0]
    t0 = time.perf_counter()
    stopped = False
    with open(logs / f"{name}.out", "wb") as out, open(logs / f"{name}.log", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(usage_file), *full], stdout=out, stderr=err,
                                cwd=REPO, env={**os.environ, **(env or {})})
        while proc.poll() is None:
            if timeout_s is not None and time.perf_counter() - t0 > timeout_s and not stopped:
                proc.terminate()
                stopped = True
            time.sleep(0.2)
    wall = time.perf_counter() - t0
    if not usage_file.is_file():  # the launcher itself died before its stage ended (SIGTERM in its first instant)
        raise SystemExit(f"stage {name!r}: no resource usage recorded (launcher exit {proc.returncode}); see {logs / name}.log")
    u = json.loads(usage_file.read_text(encoding="utf-8"))
    return {"stage": name, "command": shown(cmd), "env": env or {}, "rc": os.waitstatus_to_exitcode(u["status"]),
            "stopped": stopped, "timeout_s": timeout_s, "wall_s": round(wall, 1),
            "cpu_s": round(u["utime"] + u["stime"], 1), "peak_rss_gib": round(u["maxrss_kib"] / 2**20, 2),
            "load_avg_1m_before": float(load), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# ---- the stand-in encoder ------------------------------------------------------------------------
def build_standin(out: Path, base: str = "minilm-l6", dim: int = 96) -> Path:
    """A static-embedding sentence-transformer: ``base``'s tokenizer and token embeddings, PCA to ``dim``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, StaticEmbedding
    from transformers import AutoModel, AutoTokenizer

    from reldistill.models import resolve_model

    path = resolve_model(base).path
    table = AutoModel.from_pretrained(path).get_input_embeddings().weight.detach().numpy().astype(np.float64)
    if not 1 <= dim <= table.shape[1]:
        raise SystemExit(f"--standin-dim must be in [1, {table.shape[1]}], got {dim}.")
    _, _, vt = np.linalg.svd(table - table.mean(0), full_matrices=False)
    weights = (table @ vt[:dim].T).astype(np.float32)
    model = SentenceTransformer(modules=[StaticEmbedding(AutoTokenizer.from_pretrained(path), embedding_weights=weights),
                                         Normalize()], device="cpu")
    model.save(str(out))
    return out


# ---- recall of HNSW / IVF-PQ against flat --------------------------------------------------------
def recall_at_k(approx: list[list[str]], exact: list[list[str]], k: int = 10) -> float:
    """Mean share of each query's exact top-``k`` that the approximate top-``k`` also holds."""
    shares = [len(set(a[:k]) & set(e[:k])) / min(k, len(e)) for a, e in zip(approx, exact) if e]
    return float(np.mean(shares)) if shares else float("nan")


def time_search(index, qv: np.ndarray, k: int = 10) -> tuple[list[list[str]], dict]:
    """Top-``k`` ids searching one query at a time (p50/p99 latency) and all at once (queries/s)."""
    lat, ids = [], []
    for i in range(len(qv)):
        t = time.perf_counter()
        row, _ = index.search(qv[i:i + 1], k)
        lat.append((time.perf_counter() - t) * 1e3)
        ids.append(row[0])
    t = time.perf_counter()
    index.search(qv, k)
    batch = time.perf_counter() - t
    return ids, {"p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
                 "batch_qps": round(len(qv) / batch, 1)}


def measure_recall(doc: np.ndarray, ids: list[str], qv: np.ndarray, icfg, sweeps: dict[str, list[int]], k: int = 10,
                   refines: tuple[str, ...] = ("sq8", "flat")) -> list[dict]:
    """One row per (index, search setting): recall@k against flat, latency, build seconds, index MiB.

    IVF-PQ is measured as the recipe has it and with each of ``refines`` (``index.ivf_refine``) at the recipe's
    ``refine_k_factor``."""
    from reldistill.index.dense import DenseIndex, faiss_module

    def size_mib(index) -> float:
        return round(faiss_module().serialize_index(index.index).nbytes / 2**20, 2)

    t = time.perf_counter()
    flat = DenseIndex.build(doc, ids, "flat", config=dataclasses.replace(icfg, kind="flat"))
    build = time.perf_counter() - t
    truth, speed = time_search(flat, qv, k)
    rows = [{"kind": "flat", "setting": "exact", "recipe": True, f"recall@{k}": 1.0, "build_s": round(build, 2),
             "index_mib": size_mib(flat), **speed}]
    builds = [("hnsw", "ef_search", icfg.hnsw_ef_search, dataclasses.replace(icfg, kind="hnsw")),
              ("ivfpq", "nprobe", icfg.ivf_nprobe, dataclasses.replace(icfg, kind="ivfpq"))]
    builds += [("ivfpq", "nprobe", icfg.ivf_nprobe, dataclasses.replace(icfg, kind="ivfpq", ivf_refine=r))
               for r in refines if r != icfg.ivf_refine]
    for kind, knob, default, cfg in builds:
        t = time.perf_counter()
        index = DenseIndex.build(doc, ids, kind, config=cfg)
        build = time.perf_counter() - t
        label = kind if kind != "ivfpq" or cfg.ivf_refine == "none" else f"ivfpq + {cfg.ivf_refine} refine ×{cfg.refine_k_factor}"
        for value in sorted(set(sweeps.get(kind, [])) | {default}):
            index.tune(**{knob: value})
            found, speed = time_search(index, qv, k)
            rows.append({"kind": label, "setting": f"{knob}={value}", "recipe": value == default and cfg.ivf_refine == icfg.ivf_refine,
                         f"recall@{k}": round(recall_at_k(found, truth, k), 4), "build_s": round(build, 2),
                         "index_mib": size_mib(index), **speed})
    for r in rows:
        r["p50_vs_flat"] = round(r["p50_ms"] / rows[0]["p50_ms"], 2)
    return rows


# ---- in-process stages (each runs as its own subprocess) ------------------------------------------
def _recipe(path: Path):
    """(the Recipe, its data section)."""
    from reldistill.recipe import load_recipe

    recipe = load_recipe(path)
    return recipe, recipe.data


def stage_split(a) -> None:
    from reldistill.data import load_esci
    from reldistill.distill.mine import with_dev_split

    _, data_cfg = _recipe(a.config)
    ex = with_dev_split(load_esci(data_cfg), data_cfg.dev_fraction, data_cfg.seed)
    by = ex.groupby("split")["query_id"].agg(["size", "nunique"])
    print(json.dumps({s: {"pairs": int(r["size"]), "queries": int(r["nunique"])} for s, r in by.iterrows()}))


def stage_recall(a) -> None:
    from reldistill.data import load_esci
    from reldistill.retrieval.build import encode_catalog
    from reldistill.student import encode_queries, load_student
    from reldistill.student.catalog_vectors import catalog_digest
    from reldistill.student.identity import model_identity as student_identity

    recipe, data_cfg = _recipe(a.config)
    icfg = recipe.index
    data = load_esci(data_cfg)
    ids = data.products["product_id"].astype(str).tolist()
    texts = data.products["text"].astype(str).tolist()
    model = load_student(a.student, runtime=Runtime.from_env())
    cache = a.work / "recall-vectors" / f"{student_identity(a.student).replace('/', '_')}-{catalog_digest(ids, texts)[:16]}"
    doc = encode_catalog(model, ids, texts, cache=cache, batch_size=icfg.batch_size)
    queries = data.examples["query"].astype(str).drop_duplicates().tolist()
    qv = encode_queries(model, queries)
    rows = measure_recall(doc, ids, qv, icfg, {"hnsw": [16, 32, 128], "ivfpq": [4, 8, 32]})
    print(json.dumps({"student": student_identity(a.student), "backend": model.reldistill_backend,
                      "products": len(ids), "queries": len(queries), "dim": int(doc.shape[1]), "rows": rows}))


def stage_bm25(a) -> None:
    """BM25 at catalog size: ``BM25Index.build`` over every product, then the top 5 of ``--queries`` distinct
    queries batched (``search``) and, on the first ``--baseline`` of them, bm25s's own ``retrieve`` one query
    at a time (what ``search`` ran before), in the same process: ms per query, the ratio, equal scores."""
    from reldistill.data import load_esci
    from reldistill.index.lexical import BM25Index, tokenize

    _, data_cfg = _recipe(a.config)
    data = load_esci(data_cfg)
    ids, texts = data.products["product_id"].astype(str).tolist(), data.products["text"].astype(str).tolist()
    queries = data.examples["query"].astype(str).drop_duplicates().tolist()[: a.queries]
    del data
    t = time.perf_counter()
    bm = BM25Index.build(ids, texts)
    build = time.perf_counter() - t
    t = time.perf_counter()
    _, scores = bm.search(queries, 5)
    batched = (time.perf_counter() - t) / len(queries) * 1e3
    base = queries[: a.baseline]
    t = time.perf_counter()
    _, old = bm.retriever.retrieve(tokenize(base), k=5, show_progress=False, n_threads=0)
    single = (time.perf_counter() - t) / len(base) * 1e3
    same = [np.allclose(new, [x for x in row if x > 0], rtol=1e-6) for new, row in zip(scores, old.tolist())]
    print(json.dumps({"products": len(ids), "terms": len(bm.retriever.vocab_dict), "postings": int(bm._postings.nnz),
                      "build_s": round(build, 1), "queries": len(queries), "batched_ms_per_query": round(batched, 3),
                      "baseline_queries": len(base), "bm25s_retrieve_ms_per_query": round(single, 3),
                      "speedup": round(single / batched, 1), "same_top5_scores": f"{sum(same)}/{len(same)}"}))


def stage_standin(a) -> None:
    build_standin(a.out, a.base, a.dim)
    print(json.dumps({"path": str(a.out), "base": a.base, "dim": a.dim}))


# ---- the driver ----------------------------------------------------------------------------------
def write_recipe(work: Path, data: Path, standin: Path) -> Path:
    """The demo recipe with the generated data and the stand-in encoder as the mining student."""
    import yaml

    sections = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    sections["data"]["path"] = str(data)
    sections["distill"]["student"] = str(standin)
    sections["student"]["backend"] = "torch"
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(sections, sort_keys=False), encoding="utf-8")
    return path


def plan(a) -> list[tuple[str, list[str], bool]]:
    """(stage, command, heavy) in order."""
    py, cli, me, w = sys.executable, str(Path(sys.executable).with_name("reldistill")), str(Path(__file__).resolve()), a.work
    recipe = w / "recipe.yaml"
    index = [cli, "index", "build", "--student", str(w / "standin"), "--config", str(recipe), "--data", str(w / "data")]
    return [
        ("generate", [py, str(REPO / "scripts" / "make_esci_scale.py"), "--out", str(w / "data"),
                      "--examples", str(a.examples), "--products", str(a.products)], True),
        ("data stats", [cli, "data", "stats", "--data", str(w / "data"), "--json"], True),
        ("dev split", [py, me, "split", "--config", str(recipe)], True),
        ("stand-in encoder", [py, me, "standin", "--out", str(w / "standin"), "--dim", str(a.standin_dim)], False),
        ("recall vs flat (sample, real student)", [py, me, "recall", "--work", str(w), "--config", str(RECIPE),
                                                    "--student", a.student], False),
        ("bm25 (all products, batched queries)", [py, me, "bm25", "--config", str(recipe)], True),
        ("mine (BM25 + dense)", [cli, "distill", "mine", "--run", str(w / "run"), "--config", str(recipe)], True),
        ("index build hnsw", index[:3] + ["--run", str(w / "hnsw"), "--kind", "hnsw"] + index[3:], True),
        ("index build ivfpq", index[:3] + ["--run", str(w / "ivfpq"), "--kind", "ivfpq"] + index[3:], True),
    ]


def cpu_info() -> dict:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    return {"model": info.get("Model name", "").strip(), "cpus": info.get("CPU(s)", "").strip(),
            "simd_flags": [f for f in SIMD_FLAGS if f in flags], "flags": flags}


def main_run(a) -> None:
    a.work.mkdir(parents=True, exist_ok=True)
    result_path = a.work / "scale.json"
    done = {s["stage"]: s for s in json.loads(result_path.read_text())["stages"]} if result_path.is_file() and not a.redo else {}
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RELDISTILL_STUDENT_BACKEND": "torch",
           "RELDISTILL_LOG": "INFO"}  # the stages' progress lines go to <work>/logs/<stage>.log
    write_recipe(a.work, a.work / "data", a.work / "standin")
    stages = []
    for name, cmd, heavy in plan(a):
        finished = name in done and done[name]["rc"] == 0
        if (finished and a.only is None) or (a.only is not None and name not in a.only):
            if name in done:
                stages.append(done[name])
            continue
        free = wait_for_memory(a.min_free_gib) if heavy else mem_available_gib()
        print(f"{name}: {shown(cmd)}  ({free:.1f} GiB available)", flush=True)
        rec = run_stage(name, cmd, a.work / "logs", env=env, timeout_s=a.stage_minutes * 60 if a.stage_minutes else None)
        rec["mem_available_gib_before"] = round(free, 1)
        out = (a.work / "logs" / f"{name}.out").read_text(encoding="utf-8", errors="replace").strip()
        if out.startswith("{"):
            rec["output"] = json.loads(out)
        stages.append(rec)
        result = {"cpu": cpu_info(), "examples": a.examples, "products": a.products, "standin_dim": a.standin_dim,
                  "stages": stages + [s for s in done.values() if s["stage"] not in {x["stage"] for x in stages}]}
        result_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        print(f"  rc {rec['rc']}, {rec['wall_s']} s, peak RSS {rec['peak_rss_gib']} GiB", flush=True)
        if rec["stopped"]:
            print(f"  stopped after {a.stage_minutes} min (--stage-minutes); figures are of the part that ran", flush=True)
        elif rec["rc"] != 0:
            raise SystemExit(f"stage {name!r} failed (rc {rec['rc']}) — see {a.work / 'logs' / (name + '.log')}")
    (a.work / "scale.md").write_text(markdown(json.loads(result_path.read_text())), encoding="utf-8")
    print((a.work / "scale.md").read_text())


def markdown(result: dict) -> str:
    """The scale table (<work>/scale.md): one row per stage, then the recall rows."""
    st = {s["stage"]: s for s in result["stages"]}
    lines = []
    stats = st.get("data stats", {}).get("output")
    if stats:
        lines.append(f"Generated set: {stats['pairs']:,} judged pairs · {stats['queries']:,} queries · "
                     f"{stats['products']:,} products (`data stats`).")
    split = st.get("dev split", {}).get("output")
    if split:
        lines.append("Split: " + " · ".join(f"{k} {v['queries']:,} queries / {v['pairs']:,} pairs" for k, v in split.items()) + ".")
    bm25 = st.get("bm25 (all products, batched queries)", {}).get("output")
    if bm25:
        lines.append(f"BM25 over {bm25['products']:,} products ({bm25['postings']:,} postings): index built in {bm25['build_s']:,.1f} s; "
                     f"top 5 of {bm25['queries']:,} queries batched {bm25['batched_ms_per_query']:.2f} ms/query against bm25s's "
                     f"per-query retrieve {bm25['bm25s_retrieve_ms_per_query']:.2f} ms/query on the first {bm25['baseline_queries']:,} "
                     f"(same process: {bm25['speedup']}×), equal top-5 scores on {bm25['same_top5_scores']}.")
    mine = st.get("mine (BM25 + dense)", {}).get("output")
    if mine:
        lines.append(f"Mined: {mine['pairs']:,} candidate pairs for {mine['queries']:,} train queries "
                     f"({', '.join(f'{k} {v:,}' for k, v in mine['by_source'].items())}).")
    cpu = result["cpu"]
    lines += [f"CPU: {cpu['model']} ({cpu['cpus']} CPUs; {' '.join(cpu['simd_flags'])}), shared with other jobs "
              "(1-minute load average before each stage in the table).", "",
              "| stage | wall | CPU (user+sys) | peak RSS | load before | command |", "|---|---:|---:|---:|---:|---|"]
    for s in result["stages"]:
        wall = f"stopped at {s['wall_s']:,.1f} s" if s.get("stopped") else f"{s['wall_s']:,.1f} s"
        lines.append(f"| {s['stage']} | {wall} | {s['cpu_s']:,.1f} s | {s['peak_rss_gib']:.2f} GiB | "
                     f"{s['load_avg_1m_before']:.1f} | `{s['command']}` |")
    rec = st.get("recall vs flat (sample, real student)", {}).get("output")
    if rec:
        lines += ["", f"Recall@10 against flat: {rec['products']:,} sample products and {rec['queries']:,} sample queries "
                  f"encoded by {rec['student']} ({rec['backend']}, dim {rec['dim']}); latency = one query per search, "
                  "1 thread; ×flat = p50 over flat's p50 in the same run; * = the recipe's setting.", "",
                  "| index | setting | recall@10 | p50 ms | p99 ms | ×flat | batch q/s | build s | index MiB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rec["rows"]:
            mib = f"{r['index_mib']:.2f}" if "index_mib" in r else ""
            lines.append(f"| {r['kind']} | {r['setting']}{' *' if r['recipe'] else ''} | {r['recall@10']:.4f} | "
                         f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['p50_vs_flat']:.2f} | {r['batch_qps']:,.0f} | "
                         f"{r['build_s']:.2f} | {mib} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reldistill-scale"), help="where data, runs and results go (not git)")
    ap.add_argument("--examples", type=int, default=2_600_000)
    ap.add_argument("--products", type=int, default=1_800_000)
    ap.add_argument("--standin-dim", type=int, default=96, help="stand-in encoder dimension (a multiple of index.pq_m, 48)")
    ap.add_argument("--student", default="minilm-l6", help="the real student whose sample embeddings measure recall")
    ap.add_argument("--min-free-gib", type=float, default=HEAVY_MIN_FREE_GIB)
    ap.add_argument("--stage-minutes", type=float, default=None,
                    help="stop a stage still running after this many minutes and go on (it is marked stopped)")
    ap.add_argument("--redo", action="store_true", help="run every stage again")
    ap.add_argument("--only", nargs="+", help="run only these stages (again); names as in the table")
    p = sub.add_parser("split")
    p.add_argument("--config", type=Path, required=True)
    p = sub.add_parser("recall")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--config", type=Path, default=RECIPE)
    p.add_argument("--student", default="minilm-l6")
    p = sub.add_parser("bm25")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--queries", type=int, default=30_000)
    p.add_argument("--baseline", type=int, default=300)
    p = sub.add_parser("standin")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--base", default="minilm-l6")
    p.add_argument("--dim", type=int, default=96)
    sub.add_parser("table", help="rewrite <work>/scale.md from <work>/scale.json")
    a = ap.parse_args(argv)
    if a.cmd == "split":
        stage_split(a)
    elif a.cmd == "recall":
        stage_recall(a)
    elif a.cmd == "bm25":
        stage_bm25(a)
    elif a.cmd == "standin":
        stage_standin(a)
    elif a.cmd == "table":
        (a.work / "scale.md").write_text(markdown(json.loads((a.work / "scale.json").read_text())), encoding="utf-8")
    else:
        main_run(a)


if __name__ == "__main__":
    main()
