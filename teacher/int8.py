"""The teacher in int8 on CPUs without bf16: dynamic quantisation of the linear layers, behind a measured gate.

``Runtime.teacher_int8`` (``$RELDISTILL_TEACHER_INT8``): ``auto`` (the default on a CPU without AVX512-BF16/AMX, or
with ``RELDISTILL_CPU_BF16=0``) quantises an fp32 CPU teacher only where the gate passed; ``off`` (the default
where bf16 runs natively) never does. The gate scores the dev Task-1 pairs (every dev query with ≥ 2
judged candidates, as teacher training evaluates) in fp32 and in int8 in one run and keeps int8 only when
its scores keep Spearman ≥ 0.99 to fp32, dev nDCG@10 does not drop, and it is faster. The verdict is
measured once per teacher artifact and CPU and cached in ``<teacher>/int8-gate.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from reldistill.artifacts import write_json
from reldistill.config import DataConfig, from_dict
from reldistill.errors import UserError
from reldistill.precision import cpu_has_bf16, cpu_info
from reldistill.settings import Runtime
from reldistill.teacher.metrics import evaluate_scores

log = logging.getLogger(__name__)

INT8_MIN_SPEARMAN = 0.99
INT8_CHECK_PAIRS = 64  # int8_check (bench): the first pairs of a run
GATE_FILE = "int8-gate.json"
GATE_MAX_PAIRS = 400  # dev pairs the gate scores (whole queries), twice


def int8_mode(runtime: Runtime | None = None) -> str:
    """``auto`` or ``off``: the runtime's ($RELDISTILL_TEACHER_INT8), else auto on a CPU without native bf16."""
    runtime = runtime or Runtime()
    if runtime.teacher_int8 is not None:
        return runtime.teacher_int8
    return "off" if cpu_has_bf16(runtime) else "auto"


def cpu_key(runtime: Runtime | None = None) -> str:
    """This CPU (model, speed flags, bf16 emulation) and torch version: what a gate verdict holds for."""
    import torch

    info = cpu_info()
    emulated = "" if (runtime or Runtime()).cpu_bf16 else "0"  # as $RELDISTILL_CPU_BF16 was recorded
    raw = json.dumps([info["model"], info["flags"], emulated, torch.__version__])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def quantize_linear_int8(teacher):
    """int8 dynamic quantisation (PyTorch ``quantize_dynamic``) of the fp32 CPU teacher backbone's Linear layers, in place."""
    import torch

    torch.ao.quantization.quantize_dynamic(teacher.model.backbone, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    teacher.int8 = True  # part of the teacher's identity: no fp32 score is reused for it
    return teacher


def _timed_logits(teacher, queries, texts, batch_size):
    teacher.score_logits(queries[:4], texts[:4], batch_size=batch_size, memo=False, prior=False)  # warm-up
    t = time.perf_counter()
    out = teacher.score_logits(queries, texts, batch_size=batch_size, memo=False, prior=False)
    return out, len(queries) / (time.perf_counter() - t)


def int8_check(teacher, queries, texts, batch_size: int | None = None) -> dict[str, Any]:
    """Score the same pairs fp32 then int8 (quantising ``teacher`` in place): pairs/s of each and Spearman of the scores."""
    from scipy.stats import spearmanr

    queries, texts = list(queries), list(texts)
    out: dict[str, Any] = {"pairs": len(queries)}
    fp32, out["float32_pairs_per_s"] = _timed_logits(teacher, queries, texts, batch_size)
    quantize_linear_int8(teacher)
    int8, out["int8_pairs_per_s"] = _timed_logits(teacher, queries, texts, batch_size)
    out["spearman"] = float(spearmanr(fp32, int8).statistic)
    out["speedup"] = out["int8_pairs_per_s"] / out["float32_pairs_per_s"]
    out["kept"] = out["spearman"] >= INT8_MIN_SPEARMAN and out["speedup"] > 1.0
    return out


def gate_pairs(data_cfg):
    """The dev Task-1 pairs the gate scores: dev queries with ≥ 2 judged candidates (whole queries, capped)."""
    from reldistill.teacher.pairs import cap_by_query, cap_queries, split_pairs  # the data loaders (pyarrow)

    return cap_by_query(cap_queries(split_pairs(data_cfg, include_sparse=False)["dev"], None), GATE_MAX_PAIRS)


def gate(teacher, data_cfg, batch_size: int | None = None) -> dict[str, Any]:
    """Measure fp32 vs int8 on the dev Task-1 pairs; leaves ``teacher`` in int8 when kept, in fp32 otherwise."""
    import torch
    from scipy.stats import spearmanr

    df = gate_pairs(data_cfg)
    out: dict[str, Any] = {"cpu": cpu_info()["model"], "cpu_flags": cpu_info()["flags"], "torch": torch.__version__,
                           "pairs": int(len(df)), "queries": int(df["query_id"].nunique()) if len(df) else 0,
                           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if len(df) < 8:
        return {**out, "kept": False, "reason": f"only {len(df)} dev Task-1 pairs: nothing to check int8 on"}
    q, t = df["query"].astype(str).tolist(), df["text"].astype(str).tolist()
    dense = teacher.model.backbone
    quant = torch.ao.quantization.quantize_dynamic(dense, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)

    def both(n: int):
        teacher.model.backbone, teacher.int8 = dense, False
        a, out["float32_pairs_per_s"] = _timed_logits(teacher, q[:n], t[:n], batch_size)
        teacher.model.backbone, teacher.int8 = quant, True
        b, out["int8_pairs_per_s"] = _timed_logits(teacher, q[:n], t[:n], batch_size)
        return a, b

    first = min(INT8_CHECK_PAIRS, len(q))  # a cheap look first: most failures show on the first pairs
    fp32, int8 = both(first)
    rho = float(spearmanr(fp32, int8).statistic)
    if not rho >= INT8_MIN_SPEARMAN or out["int8_pairs_per_s"] <= out["float32_pairs_per_s"]:
        teacher.model.backbone, teacher.int8 = dense, False
        return {**out, "pairs": first, "spearman": rho, "speedup": out["int8_pairs_per_s"] / out["float32_pairs_per_s"],
                "kept": False, "reason": f"on the first {first} dev pairs: Spearman {rho:.4f} (needs ≥ {INT8_MIN_SPEARMAN}), "
                f"{out['int8_pairs_per_s'] / out['float32_pairs_per_s']:.2f}x fp32"}
    if first < len(q):
        fp32, int8 = both(len(q))
    sig = lambda x: 1.0 / (1.0 + np.exp(-x.astype(np.float64)))  # noqa: E731
    m32, m8 = evaluate_scores(df, sig(fp32)), evaluate_scores(df, sig(int8))
    out.update(spearman=float(spearmanr(fp32, int8).statistic), speedup=out["int8_pairs_per_s"] / out["float32_pairs_per_s"],
               float32_dev_ndcg10=m32["ndcg@10"], int8_dev_ndcg10=m8["ndcg@10"], dev_ndcg_queries=m32["ndcg_queries"])
    why = []
    if not out["spearman"] >= INT8_MIN_SPEARMAN:
        why.append(f"Spearman {out['spearman']:.4f} < {INT8_MIN_SPEARMAN}")
    if m32["ndcg@10"] is not None and (m8["ndcg@10"] is None or m8["ndcg@10"] < m32["ndcg@10"] - 1e-9):
        why.append(f"dev nDCG@10 drops {m32['ndcg@10']:.4f} → {m8['ndcg@10']:.4f}")
    if not out["speedup"] > 1.0:
        why.append(f"not faster ({out['speedup']:.2f}x)")
    out["kept"] = not why
    out["reason"] = "; ".join(why) or (f"Spearman {out['spearman']:.4f}, dev nDCG@10 {m32['ndcg@10']:.4f} → "
                                      f"{m8['ndcg@10']:.4f}, {out['speedup']:.2f}x fp32")
    if not out["kept"]:
        teacher.model.backbone, teacher.int8 = dense, False
    return out


def read_verdict(teacher_dir: Path, runtime: Runtime | None = None) -> dict[str, Any] | None:
    """The cached gate verdict for this teacher artifact on this CPU, or None."""
    path = Path(teacher_dir) / GATE_FILE
    try:
        book = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    v = book.get(cpu_key(runtime))
    return v if isinstance(v, dict) and v.get("manifest") == _manifest_digest(teacher_dir) else None


def _manifest_digest(teacher_dir: Path) -> str | None:
    m = Path(teacher_dir) / "manifest.json"
    return hashlib.sha256(m.read_bytes()).hexdigest()[:16] if m.is_file() else None


def _write_verdict(teacher_dir: Path, verdict: dict[str, Any], runtime: Runtime | None) -> None:
    path = Path(teacher_dir) / GATE_FILE
    try:
        book = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        book = {}
    book[cpu_key(runtime)] = {**verdict, "manifest": _manifest_digest(teacher_dir)}
    try:
        write_json(path, book)
    except OSError as e:  # a read-only teacher: measured again next time
        log.warning("cannot cache the int8 verdict in %s: %s", path, e)


def apply_int8(teacher, mode: str | None = None, data_cfg=None, batch_size: int | None = None) -> dict[str, Any] | None:
    """Quantise an fp32 CPU ``teacher`` where ``mode`` (default :func:`int8_mode` of the teacher's runtime) is auto
    and the gate passes.

    The verdict comes from ``<teacher>/int8-gate.json`` (this CPU), else the gate runs now on the dev pairs of
    ``data_cfg`` (default: the data the teacher was trained on). Returns the verdict (None: int8 not considered).
    """
    import torch

    runtime = teacher.runtime
    mode = mode or int8_mode(runtime)
    if mode != "auto" or teacher.dtype != torch.float32 or teacher.device.type != "cpu" or teacher.int8:
        return None
    tdir = Path(teacher.path) if teacher.path else None
    verdict = read_verdict(tdir, runtime) if tdir else None
    if verdict is not None:
        if verdict.get("kept"):
            quantize_linear_int8(teacher)
        return {**verdict, "cached": True}
    if data_cfg is None:
        data_cfg = _trained_on(teacher)
    if data_cfg is None or not Path(data_cfg.path).exists():
        return {"kept": False, "reason": "the teacher's dev data is not here: int8 unchecked, fp32 kept", "cached": False}
    verdict = gate(teacher, data_cfg, batch_size)
    log.info("teacher int8 gate: %s → %s", verdict["reason"], "int8" if verdict["kept"] else "fp32")
    if tdir is not None:
        _write_verdict(tdir, verdict, runtime)
    return {**verdict, "cached": False}


def _trained_on(teacher):
    """The DataConfig of the data the teacher was trained on (its manifest), or None."""
    d = (teacher.manifest or {}).get("data")
    if not isinstance(d, dict):
        return None
    try:
        return from_dict(DataConfig, d, "teacher manifest: data")
    except (UserError, TypeError):
        return None
