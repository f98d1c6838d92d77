"""Cached frozen prefix: each pair's hidden states after the lower (frozen, LoRA-free) decoder layers.

With ``train.train_layers: N`` only the top N layers carry LoRA, so the lower layers give the same
states every epoch: they are computed once per pair, kept as one flat [tokens, hidden] tensor (no
padding) + row offsets, and saved as ``<cache_dir>/<key>.safetensors``. The key hashes the base model,
the split layer, the dtype and every pair's token ids (so template, max length and data are in it):
the cache is rebuilt only when one of them changes. Training then runs layers N.. on these states.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reldistill.artifacts import atomic_path
from reldistill.progress import progress_bar
from reldistill.teacher.inputs import length_buckets

log = logging.getLogger(__name__)


class PrefixStates:
    """Per-pair prefix states: ``flat`` [sum of lengths, hidden] and ``offsets`` [pairs + 1]."""

    def __init__(self, flat: torch.Tensor, offsets: torch.Tensor):
        self.flat, self.offsets = flat, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``idx`` left-padded (zeros, masked out) → (hidden [B, W, H], attention_mask [B, W])."""
        lens = [int(self.offsets[i + 1] - self.offsets[i]) for i in idx]
        width = max(lens)
        hidden = torch.zeros((len(idx), width, self.flat.shape[1]), dtype=self.flat.dtype)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, (i, n) in enumerate(zip(idx, lens)):
            a = int(self.offsets[i])
            hidden[r, width - n:] = self.flat[a: a + n]
            mask[r, width - n:] = 1
        return hidden, mask


def cache_key(base: str, split: int, dtype: torch.dtype, ids: Sequence[Sequence[int]]) -> str:
    h = hashlib.sha256(json.dumps({"base": base, "split": split, "dtype": str(dtype), "v": 1}).encode())
    for r in ids:
        h.update(np.asarray(r, dtype=np.int64).tobytes() + b"|")
    return h.hexdigest()[:24]


@torch.inference_mode()
def prefix_states(model, encoder, ids: Sequence[list[int]], split: int, batch_size: int = 32,
                  cache_file: Path | None = None, autocast=None, progress: str | None = None) -> PrefixStates:
    """States after ``split`` layers for every row of ``ids`` (read from ``cache_file`` when it exists)."""
    from safetensors.torch import load_file, save_file

    if cache_file is not None and cache_file.is_file():
        try:
            t = load_file(str(cache_file))
            if len(t["offsets"]) == len(ids) + 1:
                return PrefixStates(t["flat"], t["offsets"])
        except Exception as e:  # noqa: BLE001 - a broken cache file is only rebuilt
            log.warning("rebuilding the prefix cache %s (%s)", cache_file, type(e).__name__)
    lens = torch.tensor([len(r) for r in ids], dtype=torch.long)
    offsets = torch.zeros(len(ids) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(lens, 0)
    flat = None
    dev = next(model.head.parameters()).device
    was_training = model.training
    model.eval()
    bar_ctx = contextlib.nullcontext(lambda k=1: None)
    if progress:
        bar_ctx = progress_bar(len(ids), progress, "pairs")
    with bar_ctx as advance, (autocast() if autocast else contextlib.nullcontext()):
        for b in length_buckets(lens.tolist(), batch_size):
            enc = encoder.collate([ids[i] for i in b])
            h = model.prefix_states(enc["input_ids"].to(dev), enc["attention_mask"].to(dev), split).cpu()
            if flat is None:
                flat = torch.empty((int(offsets[-1]), h.shape[-1]), dtype=h.dtype)
            width = h.shape[1]
            for r, i in enumerate(b):
                n = int(lens[i])
                pad_left = encoder.padding_side == "left"
                flat[offsets[i]: offsets[i] + n] = h[r, width - n:] if pad_left else h[r, :n]
            advance(len(b))
    model.train(was_training)
    if cache_file is not None and flat is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache_file) as tmp:
                save_file({"flat": flat.contiguous(), "offsets": offsets}, str(tmp))
        except OSError as e:  # a cache we cannot write only costs time
            log.warning("cannot write the prefix cache %s (%s)", cache_file, e)
    return PrefixStates(flat, offsets)
