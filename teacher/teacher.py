"""`Teacher`: a trained cross-encoder restored in one call, scoring (query, text) pairs in length buckets."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reldistill.calibration import load_calibration
from reldistill.config import require_int
from reldistill.errors import UserError
from reldistill.gguf_cache import dequantized
from reldistill.precision import resolve_dtype
from reldistill.progress import progress_bar
from reldistill.recipe.teacher import TeacherConfig
from reldistill.settings import Runtime
from reldistill.teacher import prefix_kv
from reldistill.teacher.artifact import ADAPTER_DIR, TOKENIZER_DIR, load_head, open_artifact
from reldistill.teacher.backbone import load_backbone, load_tokenizer, resolve_base
from reldistill.teacher.inputs import PairEncoder, length_buckets
from reldistill.teacher.int8 import apply_int8
from reldistill.teacher.model import CrossEncoder, answer_token_ids, build_head, lora_config, num_layers
from reldistill.teacher.prior import Prior
from reldistill.teacher.score_memo import ScoreMemo, pair_key

log = logging.getLogger(__name__)


def lm_head_weight(backbone, resolved, runtime: Runtime | None = None) -> torch.Tensor:
    """The LM head's weight [vocab, hidden]: the input embeddings when tied, else ``lm_head.weight`` from the checkpoint."""
    if getattr(backbone.config, "tie_word_embeddings", False):
        return backbone.get_input_embeddings().weight
    from safetensors import safe_open

    for f in sorted(Path(dequantized(resolved, runtime).path).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            if "lm_head.weight" in st.keys():
                return st.get_tensor("lm_head.weight")
    raise UserError(f"teacher.head lm needs the LM head of {resolved.name!r}, but its weights have no lm_head.weight "
                    "(and the embeddings are not tied) — use head mlp or linear.")


def build_cross_encoder(cfg: TeacherConfig, dtype: torch.dtype = torch.float32, base: str | None = None,
                        train_layers: int = 0, runtime: Runtime | None = None):
    """A fresh trainable cross-encoder: backbone (+LoRA, +4-bit) and its head — random for ``mlp``/``linear``,
    the LM head's yes−no row for ``lm``. ``train_layers`` > 0 puts LoRA on the top N decoder layers only.

    Returns ``(model, tokenizer, resolved_base)``.
    """
    resolved = resolve_base(base or cfg.model, runtime)
    tokenizer = load_tokenizer(resolved, runtime)
    answer_ids = answer_token_ids(tokenizer, cfg) if cfg.head == "lm" else None  # bad tokens fail before the load
    backbone = load_backbone(resolved, dtype, cfg.load_in_4bit, runtime)
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        backbone = prepare_model_for_kbit_training(backbone, use_gradient_checkpointing=False)
    head = build_head(backbone.config, cfg)
    if answer_ids is not None:
        head.init_lm_row(lm_head_weight(backbone, resolved, runtime), *answer_ids, row_trainable=cfg.lm_row_trainable)
    layers = None
    if train_layers:
        n = num_layers(backbone)
        if train_layers > n:
            raise UserError(f"train.train_layers is {train_layers} but {cfg.model!r} has {n} layers.")
        layers = list(range(n - train_layers, n))
    if cfg.lora_r > 0:
        from peft import get_peft_model

        backbone = get_peft_model(backbone, lora_config(cfg, layers))
    else:
        for p in backbone.parameters():
            p.requires_grad_(False)
    return CrossEncoder(backbone, head), tokenizer, resolved


@contextlib.contextmanager
def running_with(teacher: Teacher, **changes):
    """Within this block ``teacher`` runs with ``changes`` to its runtime, e.g. ``teacher_prefix_kv=False`` for the full
    forward (benchmarks compare the paths on one loaded teacher this way)."""
    old = teacher.runtime
    teacher.runtime = dataclasses.replace(old, **changes)
    try:
        yield teacher
    finally:
        teacher.runtime = old


class Teacher:
    """A loaded teacher: ``score_pairs(queries, texts) -> probabilities`` (sigmoid of the relevance logit).

    Pairs it has scored before (same identity, same query and text) come from its ``memo``
    (:mod:`reldistill.teacher.score_memo`; default: one of ``runtime.teacher_memo_pairs`` pairs, its own) without
    running the model. ``runtime`` (default ``Runtime()``) also says whether shared prefixes run once
    (``teacher_prefix_kv``) and whether ``load`` considers int8. A teacher trained with a ``prior``
    (:mod:`reldistill.teacher.prior`) blends the LLM logit with its bi-encoder's cosine.
    """

    def __init__(self, model: CrossEncoder, tokenizer, cfg: TeacherConfig, manifest: dict | None = None,
                 path: Path | None = None, batch_size: int = 32, memo: ScoreMemo | None = None,
                 runtime: Runtime | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.manifest = manifest or {}
        self.path = path
        self.batch_size = batch_size
        self.encoder = PairEncoder(tokenizer, cfg.template, cfg.max_length, cfg.padding_side)
        self.runtime = runtime or Runtime()
        self.memo = ScoreMemo(self.runtime.teacher_memo_pairs) if memo is None else memo
        self.int8 = False  # set by reldistill.teacher.int8.quantize_linear_int8
        self.int8_verdict: dict | None = None  # the int8 gate's verdict when load considered int8
        self.forward_calls = 0  # model forward passes run (one per batch)
        self.prior = Prior.from_manifest(self.manifest.get("prior"))  # None: the LLM alone
        self.calibration = load_calibration(path)  # score → P(Exact), P(E or S); None when never fitted

    @functools.cached_property
    def _artifact_key(self) -> str:
        """The artifact this teacher was loaded from: its id and a digest of its manifest (as loaded)."""
        art = self.manifest.get("artifact_id") or (str(Path(self.path).resolve()) if self.path else f"in-memory:{id(self)}")
        manifest = Path(self.path) / "manifest.json" if self.path else None
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] if manifest is not None and manifest.is_file() else ""
        return f"{art}:{digest}"

    @property
    def identity(self) -> str:
        """What a score depends on besides the pair: artifact, dtype, device, int8, template, max_length, padding side."""
        c = self.cfg
        return "|".join(map(str, (self._artifact_key, self.dtype, self.device.type, "int8" if self.int8 else "dense",
                                  c.template, c.max_length, c.padding_side)))

    @property
    def device(self) -> torch.device:
        return next(self.model.head.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.backbone.parameters()).dtype

    @classmethod
    def load(cls, directory: str | os.PathLike, dtype: str = "auto", merge_lora: bool = True,
             device: str | None = None, int8: str | None = None, data_cfg=None, *,
             runtime: Runtime | None = None) -> Teacher:
        """Restore a teacher artifact: base model (via reldistill.models) + adapter (merged) + head + tokenizer.

        ``int8``: auto | off (default ``runtime.teacher_int8``: $RELDISTILL_TEACHER_INT8, auto on a CPU without
        bf16) — an fp32 CPU teacher is quantised where its gate passed (reldistill.teacher.int8; ``data_cfg``: the
        dev data the gate measures on, default the teacher's own); the verdict is in ``int8_verdict``."""
        from transformers import AutoTokenizer

        runtime = runtime or Runtime()
        art = open_artifact(directory)
        tdtype = resolve_dtype(dtype, "dtype", runtime)
        resolved = resolve_base(art.base, runtime)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(art.root / TOKENIZER_DIR), trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{art.root / TOKENIZER_DIR} cannot be loaded ({str(e).splitlines()[0][:100]}) — the artifact is corrupted; retrain.") from None
        backbone = load_backbone(resolved, tdtype, runtime=runtime)
        if art.cfg.lora_r > 0:
            from peft import PeftModel

            try:
                backbone = PeftModel.from_pretrained(backbone, str(art.root / ADAPTER_DIR), is_trainable=False)
            except Exception as e:  # noqa: BLE001 - safetensors/peft raise many types for a broken file
                raise UserError(f"{art.root / ADAPTER_DIR} cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:100]}) "
                                "— the adapter is truncated or from another model; retrain or copy it again.") from None
            if merge_lora:
                backbone = backbone.merge_and_unload()
        head = build_head(backbone.config, art.cfg)
        load_head(head, art.root)
        model = CrossEncoder(backbone, head)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.to(dev)
        teacher = cls(model, tokenizer, art.cfg, art.manifest, art.root, runtime=runtime)
        if merge_lora:
            teacher.int8_verdict = apply_int8(teacher, int8, data_cfg)
        return teacher

    def score_logits(self, queries: Sequence[str], texts: Sequence[str], batch_size: int | None = None,
                     progress: bool = False, memo: bool = True, prior: bool = True) -> np.ndarray:
        """Relevance logits, in input order (batches are length-bucketed internally): the LLM's, blended with
        the teacher's prior when it has one (``prior=False``: the LLM's alone, as timings and the int8 gate use).

        With ``memo`` (default) pairs already in the memo are not scored again, and a pair repeated in
        the call is scored once; ``memo=False`` runs every pair (timings).
        """
        out = self._llm_logits(queries, texts, batch_size, progress, memo)
        if prior and self.prior is not None and len(out):
            out = self.prior.apply([str(q) for q in queries], [str(t) for t in texts], out, self.runtime)
        return out

    def _llm_logits(self, queries: Sequence[str], texts: Sequence[str], batch_size: int | None,
                    progress: bool, memo: bool) -> np.ndarray:
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} texts")
        if batch_size is not None:
            require_int(batch_size, "the teacher's batch size (--batch-size, score.batch_size)")
        queries, texts = [str(q) for q in queries], [str(t) for t in texts]
        if not memo or not self.memo.max_pairs or not queries:
            return self._run(queries, texts, batch_size, progress)
        ident = self.identity
        keys = [pair_key(ident, q, t) for q, t in zip(queries, texts)]
        known = self.memo.get_many(keys)
        todo: dict[bytes, int] = {}
        for i, (k, v) in enumerate(zip(keys, known)):
            if v is None and k not in todo:
                todo[k] = i
        out = np.array([np.nan if v is None else v for v in known], dtype=np.float32)
        if todo:
            idx = list(todo.values())
            new = self._run([queries[i] for i in idx], [texts[i] for i in idx], batch_size, progress)
            self.memo.put_many(list(todo), new.tolist())
            fresh = dict(zip(todo, new))
            for i, (k, v) in enumerate(zip(keys, known)):
                if v is None:
                    out[i] = fresh[k]
        return out

    @torch.inference_mode()
    def _run(self, queries: list[str], texts: list[str], batch_size: int | None, progress: bool) -> np.ndarray:
        """The model's logits for every pair (no memo)."""
        n = len(queries)
        out = np.zeros(n, dtype=np.float32)
        if n == 0:
            return out
        ids = self.encoder.encode(queries, texts)
        dev = self.device
        ctx = progress_bar(n, "teacher scoring", "pairs") if progress else contextlib.nullcontext(lambda k=1: None)
        with ctx as advance:
            if not self.model.training and self.runtime.teacher_prefix_kv:  # shared prefixes (template, query) once (exact)
                pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
                fast = prefix_kv.score(self.model, ids, batch_size or self.batch_size, pad, dev, advance, keys=queries)
                if fast is not None:
                    self.forward_calls += fast[1]
                    return fast[0]
            for b in length_buckets([len(r) for r in ids], batch_size or self.batch_size):
                enc = self.encoder.collate([ids[i] for i in b])
                logits = self.model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev))
                self.forward_calls += 1
                out[b] = logits.float().cpu().numpy()
                advance(len(b))
        return out

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], batch_size: int | None = None,
                    progress: bool = False, memo: bool = True, prior: bool = True) -> np.ndarray:
        """Relevance probabilities sigmoid(logit) in [0, 1], one per (query, text) pair, in input order
        (``prior=False``: the LLM's alone, without the teacher's prior blend)."""
        logits = self.score_logits(queries, texts, batch_size, progress, memo, prior)
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
