"""`reldistill teacher export`: LoRA merged into the backbone + the score row → a plain transformers folder.

The folder loads with ``AutoModelForSequenceClassification`` (no reldistill import): the merged
backbone, ``score.weight`` = the head's one row (``linear`` head: its weights; ``lm`` head: W[yes] − W[no],
the conversion vLLM and TEI use for yes/no rerankers), ``pad_token_id`` set to the teacher's non-EOS pad
token so HF's last-non-pad-token pooling picks the last real token, and the tokenizer with the teacher's
padding side (and BOS added the way the teacher adds it). HF's sequence-classification ``score`` layer
has no bias, so the head's bias is recorded in ``config.json`` as ``reldistill.score_bias``:
``sigmoid(logit + score_bias)`` is the teacher's probability; the ranking is the same without it.
An ``mlp`` head (two layers with a GELU) has no score row: ``format="onnx"`` (the default for ``mlp``) writes the
whole cross-encoder — merged backbone, last-token pooling and head — as ONNX (weights in ``model.onnx.data``) with
the tokenizer, which ONNX Runtime (or Triton / any ONNX server) scores without reldistill or torch.
A teacher blended with a bi-encoder prior (``teacher.prior_student``) is refused: an export holds the LLM alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from reldistill.artifacts import atomic_path, check_replaceable, write_manifest
from reldistill.calibration import CALIBRATION_FILE
from reldistill.errors import UserError
from reldistill.teacher.export_onnx import export_onnx

EXPORTABLE_HEADS = ("linear", "lm")
FORMATS = ("auto", "transformers", "onnx")
KIND = "teacher-export"
ONNX_KIND = "teacher-export-onnx"


def check_head(kind: str) -> None:
    if kind not in EXPORTABLE_HEADS:
        raise UserError(f"teacher.head {kind!r} cannot be exported to a plain transformers model: only the "
                        f"{' and '.join(EXPORTABLE_HEADS)} heads (one score row) export — retrain with teacher.head: linear or lm.")


def check_format(kind: str, fmt: str, dtype: str) -> str:
    """The export format for head ``kind`` (``auto``: transformers for one-row heads, onnx for ``mlp``)."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    if fmt == "auto":
        fmt = "transformers" if kind in EXPORTABLE_HEADS else "onnx"
    if fmt == "transformers":
        check_head(kind)
    if fmt == "onnx" and dtype not in ("fp32", "float32"):
        raise UserError(f"the ONNX export is fp32 (what ONNX Runtime runs on a CPU), got --dtype {dtype} — drop --dtype.")
    return fmt


def check_prior(manifest: dict) -> None:
    """An export holds the LLM alone: a prior dev kept at LLM weight 1 changes nothing and exports as is; a teacher
    whose scores blend in a bi-encoder's cosine is refused."""
    from reldistill.teacher.prior import Prior

    prior = Prior.from_manifest(manifest.get("prior"))
    if prior is not None:
        raise UserError(f"this teacher blends its LLM score with a bi-encoder prior ({prior.student}, LLM weight {prior.weight:g}) "
                        "that an exported model cannot hold — export a teacher trained without teacher.prior_student, or serve it with reldistill.")


def score_row(head: nn.Module, kind: str) -> tuple[torch.Tensor, float]:
    """The head's single score row ``[1, hidden]`` and its bias; one clear error for heads that do not export."""
    check_head(kind)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1 or linears[0].out_features != 1:
        raise UserError(f"the {kind} head holds {len(linears)} linear layers, not one score row — the artifact is not exportable.")
    row = linears[0]
    bias = float(row.bias.detach().float().item()) if row.bias is not None else 0.0
    return row.weight.detach().float().cpu().clone(), bias


def _bos_like_teacher(tokenizer, encoder) -> None:
    """Make ``tokenizer(prompt)`` start with BOS exactly when the teacher's pair encoder adds one."""
    from tokenizers import processors

    wants = bool(encoder.bos)
    ids = tokenizer("x")["input_ids"]
    has = bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
    if wants and not has:
        bos = tokenizer.bos_token
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_token_id)])
    elif has and not wants:
        raise UserError("the teacher's tokenizer adds BOS but its pair encoder does not — the export would score "
                        "different token ids; retrain or export a teacher whose tokenizer matches its recipe.")


def export_teacher(teacher_dir: str | Path, out: str | Path, dtype: str = "float32", force: bool = False,
                   fmt: str = "auto") -> Path:
    """Write ``out``: merged backbone + score row as ``AutoModelForSequenceClassification``, tokenizer, card
    (``fmt`` transformers), or the whole cross-encoder as ONNX (``fmt`` onnx; ``auto``: onnx for the mlp head).

    ``out`` must be absent, empty or an earlier export (``force`` replaces anything)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from reldistill.teacher.artifact import TOKENIZER_DIR, open_artifact
    from reldistill.teacher.teacher import Teacher

    art = open_artifact(teacher_dir)  # one clear error for a missing/broken artifact, before any model loads
    fmt = check_format(art.cfg.head, fmt, dtype)
    check_prior(art.manifest)
    if fmt == "onnx":
        return export_onnx(teacher_dir, out, force)
    check_replaceable(out, KIND, force)
    teacher = Teacher.load(teacher_dir, dtype=dtype, merge_lora=True, device="cpu", int8="off")
    weight, bias = score_row(teacher.model.head, art.cfg.head)
    backbone = teacher.model.backbone
    tok = teacher.tokenizer
    base = {k: v for k, v in backbone.config.to_dict().items() if k not in ("id2label", "label2id")}
    cfg = AutoConfig.for_model(**{**base, "num_labels": 1, "pad_token_id": tok.pad_token_id})
    cfg.architectures = None
    cfg.reldistill = {"head": art.cfg.head, "score_bias": bias, "template": art.cfg.template, "add_bos": bool(teacher.encoder.bos),
                      "max_length": art.cfg.max_length, "padding_side": art.cfg.padding_side,
                      "score": "sigmoid(logits + score_bias) is the teacher's probability",
                      **_answer_tokens(art)}
    try:
        model = AutoModelForSequenceClassification.from_config(cfg, dtype=teacher.dtype)
    except ValueError as e:
        raise UserError(f"transformers has no sequence-classification model for {cfg.model_type!r} ({str(e)[:80]}).") from None
    if not isinstance(getattr(model, "score", None), nn.Linear):
        raise UserError(f"{type(model).__name__} has no `score` layer — only decoder backbones (Llama, Qwen, ...) export.")
    missing, unexpected = getattr(model, model.base_model_prefix).load_state_dict(backbone.state_dict(), strict=False)
    if unexpected or [k for k in missing if "rotary" not in k]:
        raise UserError(f"the merged backbone does not fit {type(model).__name__} (missing {missing[:3]}, unexpected {unexpected[:3]}).")
    with torch.no_grad():
        model.score.weight.copy_(weight.to(model.score.weight.dtype))
    tok = AutoTokenizer.from_pretrained(str(art.root / TOKENIZER_DIR), padding_side=art.cfg.padding_side,
                                        pad_token=teacher.tokenizer.pad_token)  # init kwargs are what gets saved
    _bos_like_teacher(tok, teacher.encoder)
    out = Path(out)
    with atomic_path(out, force=force) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "README.md").write_text(_card(art.cfg, bias), encoding="utf-8")
        if (art.root / CALIBRATION_FILE).is_file():  # P(Exact), P(E or S) from the probability: plain JSON (reldistill.calibration)
            shutil.copy2(art.root / CALIBRATION_FILE, tmp / CALIBRATION_FILE)
        write_manifest(tmp, KIND, source=str(Path(teacher_dir).resolve()), head=art.cfg.head, score_bias=bias,
                       base_model=art.manifest.get("base_model"))
    return out


def _answer_tokens(art) -> dict:
    """For the ``lm`` head: the [yes, no] answer tokens and ids the score row was made from (from the recipe and manifest)."""
    if art.cfg.head != "lm":
        return {}
    info = art.manifest.get("score_head") or {}
    tokens = info.get("answer_tokens") or getattr(art.cfg, "answer_tokens", None)
    return {k: v for k, v in (("answer_tokens", tokens), ("answer_token_ids", info.get("answer_token_ids"))) if v}


def _card(cfg, bias: float) -> str:
    return f"""# reldistill teacher (exported)

A LoRA-tuned cross-encoder with its adapter merged in; head `{cfg.head}` as one score row. The teacher
tokenizes the prompt's parts separately (its text cut first to fit {cfg.max_length} tokens); tokenizing the
whole prompt at once changes the ids at the joints and moves scores slightly. To get the teacher's scores:

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tok = AutoTokenizer.from_pretrained(PATH)
model = AutoModelForSequenceClassification.from_pretrained(PATH, dtype=torch.float32).eval()
info = model.config.reldistill
before, after = info["template"].split("{{text}}", 1)
bos = [tok.bos_token_id] if info["add_bos"] else []


def encode(query, text):
    head = tok(before.replace("{{query}}", query), add_special_tokens=False)["input_ids"]
    tail = tok(after.replace("{{query}}", query), add_special_tokens=False)["input_ids"]
    body = tok(text, add_special_tokens=False)["input_ids"]
    budget = info["max_length"] - len(bos)
    if len(head) + len(tail) > budget - 4:  # a long prompt: keep the start of the head and the whole tail
        head = head[: max(budget - len(tail) - 4, 1)]
    room = max(budget - len(head) - len(tail), 0)
    return (bos + head + body[:room] + tail)[: info["max_length"]]


def score(pairs):
    batch = tok.pad({{"input_ids": [encode(q, t) for q, t in pairs]}}, return_tensors="pt")  # pads on the teacher's side
    with torch.no_grad():
        logits = model(**batch).logits[:, 0]
    return logits, torch.sigmoid(logits + info["score_bias"])  # the teacher's probability (ranking: logits alone)
```

Score bias: {bias:.6g}.

`calibration.json` (when the teacher was calibrated) maps that probability p to P(Exact) and P(Exact or
Substitute): `platt` is sigmoid(a · log(p / (1 − p)) + b); `isotonic` is `numpy.interp(p, knots, values)`.
"""
