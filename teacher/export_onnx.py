"""`reldistill teacher export --format onnx`: the whole cross-encoder (any head, ``mlp`` included) as one ONNX graph.

The graph takes ``input_ids`` and ``attention_mask`` ([batch, seq], int64, padded on the teacher's side) and returns
``logits`` [batch]: the merged backbone (LoRA folded in), last-real-token pooling and the score head, exactly
``CrossEncoder.forward``; ``sigmoid(logits)`` is the teacher's probability. Weights go to ``model.onnx.data``
(external data: ONNX's protobuf cannot hold more than 2 GB, a 1B model is ~5 GB in fp32). The folder also
holds the tokenizer (``tokenizer.json``) and ``config.json`` with the prompt recipe, so ONNX Runtime + the
``tokenizers`` library score pairs with neither reldistill nor torch nor transformers (the README shows how).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from reldistill.artifacts import atomic_path, check_replaceable, write_manifest

KIND = "teacher-export-onnx"
MODEL_FILE = "model.onnx"
OPSET = 18


class _Scorer(nn.Module):
    """``CrossEncoder`` with the two named inputs the graph exposes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)


def export_onnx(teacher_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write ``out``: ``model.onnx`` (+ ``model.onnx.data``), ``tokenizer.json``, ``config.json``, README, manifest."""
    from reldistill.teacher.artifact import open_artifact
    from reldistill.teacher.teacher import Teacher

    art = open_artifact(teacher_dir)
    check_replaceable(out, KIND, force)
    teacher = Teacher.load(teacher_dir, dtype="float32", merge_lora=True, device="cpu", int8="off")
    enc = teacher.encoder
    # a batch of 3 rows of different lengths: no dimension is 1 or equal to another, so none is specialised
    sample = enc.collate(enc.encode(["red shoes", "usb c cable", "tea"], ["running shoes for men size 10", "charger", "green tea bags"]))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    tok = teacher.tokenizer
    info = {"head": art.cfg.head, "template": art.cfg.template, "max_length": art.cfg.max_length,
            "padding_side": art.cfg.padding_side, "add_bos": bool(enc.bos), "bos_token_id": tok.bos_token_id,
            "pad_token_id": tok.pad_token_id, "inputs": ["input_ids", "attention_mask"], "outputs": ["logits"],
            "score": "sigmoid(logits) is the teacher's probability"}
    out = Path(out)
    with atomic_path(out, force=force) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            torch.onnx.export(_Scorer(teacher.model).eval(), (sample["input_ids"], sample["attention_mask"]),
                              str(tmp / MODEL_FILE), input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                              dynamo=True, external_data=True, opset_version=OPSET, verbose=False)
        tok.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "config.json").write_text(json.dumps({"reldistill": info}, indent=1), encoding="utf-8")
        (tmp / "README.md").write_text(CARD.replace("{head}", art.cfg.head), encoding="utf-8")
        write_manifest(tmp, KIND, source=str(Path(teacher_dir).resolve()), head=art.cfg.head, format="onnx",
                       base_model=art.manifest.get("base_model"))
    return out


CARD = """# reldistill teacher (ONNX export)

The whole cross-encoder (head `{head}`, LoRA merged) as ONNX: inputs `input_ids`, `attention_mask`
([batch, seq] int64, padded on the side `config.json` names), output `logits` [batch];
`sigmoid(logits)` is the teacher's probability. Weights are in `model.onnx.data` (keep it beside `model.onnx`).
Scoring needs only `onnxruntime`, `tokenizers` and `numpy`:

```python
import json

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

info = json.load(open(f"{PATH}/config.json", encoding="utf-8"))["reldistill"]
tok = Tokenizer.from_file(f"{PATH}/tokenizer.json")
session = ort.InferenceSession(f"{PATH}/model.onnx", providers=["CPUExecutionProvider"])
before, after = info["template"].split("{text}", 1)
bos = [info["bos_token_id"]] if info["add_bos"] else []


def ids(s):
    return tok.encode(s, add_special_tokens=False).ids


def encode(query, text):  # the teacher's own prompt: the product text is cut first to fit max_length
    head, tail, body = ids(before.replace("{query}", query)), ids(after.replace("{query}", query)), ids(text)
    budget = info["max_length"] - len(bos)
    if len(head) + len(tail) > budget - 4:  # a long prompt: keep the start of the head and the whole tail
        head = head[: max(budget - len(tail) - 4, 1)]
    room = max(budget - len(head) - len(tail), 0)
    return (bos + head + body[:room] + tail)[: info["max_length"]]


def score(pairs):
    rows = [encode(q, t) for q, t in pairs]
    width, pad, left = max(map(len, rows)), info["pad_token_id"], info["padding_side"] == "left"
    fill = [[pad] * (width - len(r)) for r in rows]
    input_ids = np.array([f + r if left else r + f for r, f in zip(rows, fill)], dtype=np.int64)
    mask = np.array([[0] * len(f) + [1] * len(r) if left else [1] * len(r) + [0] * len(f) for r, f in zip(rows, fill)], dtype=np.int64)
    logits = session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]
    return logits, 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
```
"""
