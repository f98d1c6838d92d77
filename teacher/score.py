"""Score a parquet of (query, product_id[, text]) pairs with the teacher: resumable shards, then one atomic file.

Rows are cut into shards of ``shard_size`` in input order; each finished shard is written
atomically to ``<out dir>/shards/<out stem>/shard-NNNNN.parquet``, so a crashed run skips them
when rerun. Under ``accelerate launch`` process ``r`` of ``w`` scores shards ``r, r+w, ...``.
The final parquet (input columns + ``teacher_score`` + ``teacher_logit``, and ``p_exact`` +
``p_exact_or_substitute`` when the teacher has a calibration.json) is written once every shard exists. Inside a shard, batches are length-bucketed; results are returned in input order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reldistill.artifacts import file_fingerprint, write_parquet
from reldistill.calibration import load_calibration
from reldistill.config import DataConfig
from reldistill.errors import UserError
from reldistill.precision import parse_dtype
from reldistill.progress import progress_bar
from reldistill.settings import Runtime
from reldistill.student.catalog_vectors import catalog_digest
from reldistill.teacher.int8 import cpu_key, int8_mode

log = logging.getLogger(__name__)

SHARDS_DIR = "shards"
SCORES_KIND = "teacher-scores"  # recorded in the output parquet: `teacher score -o` replaces only such a file


def read_pairs(pairs_path: str | os.PathLike, data_cfg: DataConfig | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The input pairs and the product text of each row (from ``text`` or the data layer's products)."""
    p = Path(pairs_path)
    if not p.is_file():
        raise UserError(f"pairs file {p} does not exist — pass a parquet with columns query and product_id.")
    try:
        df = pd.read_parquet(p)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise UserError(f"pairs file {p} is not a readable parquet file ({type(e).__name__}) — is it truncated?") from None
    missing = [c for c in ("query", "product_id") if c not in df.columns]
    if missing:
        raise UserError(f"pairs file {p} has no column {missing[0]!r} (columns: {', '.join(map(str, df.columns))}) — "
                        "it needs query and product_id (and optionally text).")
    if df.empty:
        raise UserError(f"pairs file {p} has no rows — nothing to score.")
    q = df["query"]
    bad = q.isna() | (q.astype(str).str.strip() == "")
    if bad.any():
        raise UserError(f"pairs file {p} has an empty query in column 'query' ({int(bad.sum())} row(s)) — drop or fill those rows.")
    if df["product_id"].isna().any():
        raise UserError(f"pairs file {p} has a missing product_id in {int(df['product_id'].isna().sum())} row(s) — drop or fill those rows.")
    if "text" in df.columns:
        t = df["text"]
        bad = t.isna() | (t.astype(str).str.strip() == "")
        if bad.any():
            raise UserError(f"pairs file {p} has empty text in column 'text' ({int(bad.sum())} row(s)) — fill it or drop the column to use the catalog text.")
        return df, t.astype(str).tolist()
    from reldistill.data import load_products

    cfg = data_cfg or DataConfig()
    ids = df["product_id"].astype(str)
    products, _ = load_products(cfg, set(ids))
    text = products.set_index("product_id")["text"]
    absent = ~ids.isin(text.index)
    if absent.any():
        raise UserError(f"pairs file {p}: product_id {ids[absent].iloc[0]!r} ({int(absent.sum())} row(s)) is not in the products of "
                        f"{cfg.path} — add a 'text' column or point --data at the right catalog.")
    return df, ids.map(text).tolist()


def _signature(teacher_dir: Path, pairs_path: Path, dtype: str, batch_size: int | None, shard_size: int,
               df: pd.DataFrame, texts: list[str]) -> dict[str, Any]:
    """What the shards depend on; pairs without a text column add a digest of the catalog text they were given."""
    manifest = teacher_dir / "manifest.json"
    sig = {"teacher": str(teacher_dir.resolve()), "teacher_manifest": file_fingerprint(manifest),
           "pairs": file_fingerprint(pairs_path), "dtype": dtype, "batch_size": batch_size, "shard_size": shard_size}
    if "text" not in df.columns:
        sig["catalog"] = catalog_digest(df["product_id"].astype(str).tolist(), texts)
    return sig


def shard_dir_for(out_path: Path) -> Path:
    return out_path.parent / SHARDS_DIR / out_path.stem


def _prepare_shards(sdir: Path, sig: dict[str, Any], main: bool) -> None:
    """Keep shards only if they were made by the same teacher, pairs, dtype and shard size."""
    sig_file = sdir / "signature.json"
    if main:
        if sdir.is_dir():
            try:
                same = json.loads(sig_file.read_text()) == sig
            except (OSError, json.JSONDecodeError):
                same = False
            if not same:
                log.warning("discarding stale shards in %s (other teacher, pairs or settings)", sdir)
                shutil.rmtree(sdir)
        sdir.mkdir(parents=True, exist_ok=True)
        if not sig_file.is_file():
            tmp = sig_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(sig, indent=1))
            os.replace(tmp, sig_file)


def _shard_ok(path: Path, n: int) -> bool:
    if not path.is_file():
        return False
    try:
        return len(pd.read_parquet(path, columns=["row"])) == n
    except Exception:  # noqa: BLE001 - an unreadable shard is redone
        return False


def with_probabilities(result: pd.DataFrame, teacher_dir: Path) -> pd.DataFrame:
    """``result`` with ``p_exact`` and ``p_exact_or_substitute`` from the teacher's calibration (unchanged without one)."""
    cal = load_calibration(teacher_dir)
    if cal is not None:
        for name, p in cal.probabilities(result["teacher_score"].to_numpy(np.float64)).items():
            result[name] = p.astype(np.float32)
    return result


def score_file(teacher_dir: str | os.PathLike, pairs_path: str | os.PathLike, out_path: str | os.PathLike,
               data_cfg: DataConfig | None = None, batch_size: int | None = None, dtype: str = "auto",
               shard_size: int = 512, progress: bool = True, limit: int | None = None, *,
               runtime: Runtime | None = None) -> Path:
    """Score ``pairs_path`` → ``out_path`` (input columns + teacher_score + teacher_logit). Returns ``out_path``."""
    return score_file_stats(teacher_dir, pairs_path, out_path, data_cfg, batch_size, dtype, shard_size, progress, limit,
                            runtime=runtime)["out"]


def score_file_stats(teacher_dir, pairs_path, out_path, data_cfg=None, batch_size=None, dtype="auto",
                     shard_size=512, progress=True, limit=None, *, runtime: Runtime | None = None) -> dict[str, Any]:
    """``score_file`` returning {'out', 'pairs', 'scored_now', 'seconds', 'pairs_per_s', 'shards', 'dtype'}
    (``runtime``: the teacher's int8, prefix-KV and memo settings, and the thread choice)."""
    from accelerate import PartialState

    from reldistill.teacher.artifact import open_artifact

    teacher_dir, pairs_path, out = Path(teacher_dir), Path(pairs_path), Path(out_path)
    dtype = parse_dtype(dtype, "--dtype")
    if shard_size < 1:
        raise UserError(f"shard size must be >= 1, got {shard_size}.")
    open_artifact(teacher_dir)  # fail fast on a broken teacher, before reading anything big
    df, texts = read_pairs(pairs_path, data_cfg)
    if limit is not None:
        df, texts = df.iloc[:limit].reset_index(drop=True), texts[:limit]
    import torch

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU processes use gloo
    sig = _signature(teacher_dir, pairs_path, dtype, batch_size, shard_size, df, texts) | {"limit": limit}
    runtime = runtime or Runtime()
    if int8_mode(runtime) == "auto":
        sig["int8"] = f"auto:{cpu_key(runtime)}"  # shards scored with int8 are not mixed with fp32 ones
    sdir = shard_dir_for(out)
    _prepare_shards(sdir, sig, state.is_main_process)
    state.wait_for_everyone()

    n = len(df)
    bounds = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    paths = [sdir / f"shard-{i:05d}.parquet" for i in range(len(bounds))]
    t0 = time.monotonic()
    scored, int8 = _score_own_shards(state, bounds, paths, df["query"].astype(str).tolist(), texts,
                                     lambda: _load_for_scoring(teacher_dir, dtype, state, data_cfg, runtime),
                                     batch_size, progress)
    seconds = time.monotonic() - t0
    state.wait_for_everyone()
    if state.is_main_process:
        _gather_shards(paths, bounds, df, out, teacher_dir)
    state.wait_for_everyone()
    return {"out": out, "pairs": n, "scored_now": scored, "seconds": seconds,
            "pairs_per_s": scored / seconds if scored and seconds > 0 else None, "shards": len(bounds), "dtype": dtype,
            "int8": int8,
            "signature": hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:12]}


def _load_for_scoring(teacher_dir: Path, dtype: str, state, data_cfg: DataConfig | None, runtime: Runtime):
    """The teacher on this process's device (int8 where its gate passed: reldistill.teacher.int8), after the
    thread choice."""
    from reldistill.teacher.backbone import set_cpu_threads
    from reldistill.teacher.teacher import Teacher

    set_cpu_threads("auto", runtime)
    return Teacher.load(teacher_dir, dtype=dtype, device=str(state.device) if state.num_processes > 1 else None,
                        data_cfg=data_cfg, runtime=runtime)


def _score_own_shards(state, bounds: list[tuple[int, int]], paths: list[Path], queries: list[str], texts: list[str],
                      load, batch_size: int | None, progress: bool) -> tuple[int, dict | None]:
    """Score this process's unfinished shards (shard i belongs to process i % world), each written whole as it
    finishes; the teacher is loaded (``load()``) only when one is left. (pairs scored now, the int8 verdict)."""
    rank, world = state.process_index, state.num_processes
    todo = [i for i in range(len(bounds)) if i % world == rank and not _shard_ok(paths[i], bounds[i][1] - bounds[i][0])]
    if not todo:
        return 0, None
    teacher = load()
    done_rows = sum(b - a for i, (a, b) in enumerate(bounds) if i % world == rank and i not in todo)
    mine = sum(b - a for i, (a, b) in enumerate(bounds) if i % world == rank)
    ctx = progress_bar(mine, f"teacher scoring ({str(teacher.dtype).removeprefix('torch.')})", "pairs",
                       initial=done_rows) if progress and state.is_main_process else contextlib.nullcontext(lambda k=1: None)
    scored = 0
    with ctx as advance:
        for i in todo:
            a, b = bounds[i]
            logits = teacher.score_logits(queries[a:b], texts[a:b], batch_size=batch_size)
            write_parquet(paths[i], pd.DataFrame({"row": np.arange(a, b, dtype=np.int64), "teacher_logit": logits}))
            scored += b - a
            advance(b - a)
    return scored, teacher.int8_verdict


def _gather_shards(paths: list[Path], bounds: list[tuple[int, int]], df: pd.DataFrame, out: Path, teacher_dir: Path) -> None:
    """Join every shard's logits onto the pairs, in row order, with the score and probabilities, into ``out``."""
    parts = []
    for i, p in enumerate(paths):
        if not _shard_ok(p, bounds[i][1] - bounds[i][0]):
            raise UserError(f"shard {p} is missing or incomplete after scoring — rerun the same command to finish it.")
        parts.append(pd.read_parquet(p))
    logit = pd.concat(parts, ignore_index=True).sort_values("row")["teacher_logit"].to_numpy(np.float32)
    result = df.copy()
    result["teacher_score"] = (1.0 / (1.0 + np.exp(-logit.astype(np.float64)))).astype(np.float32)
    result["teacher_logit"] = logit
    write_parquet(out, with_probabilities(result, teacher_dir), kind=SCORES_KIND)
