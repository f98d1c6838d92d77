"""Teacher scoring with the template's shared prefix run once: exact, and fewer tokens per pair.

Every pair starts with the same tokens (BOS + the template's instruction up to the query: 30 of the
demo teacher's ~77 tokens per pair). ``score`` runs those once per call with the decoder's KV cache,
then each length-bucketed batch runs only its rows' own tokens (right-padded, positions continuing
after the prefix) against a copy of that cache, and pools each row's last real token — the same
logits as the full forward up to fp32 rounding, since attention is causal. ``$RELDISTILL_TEACHER_PREFIX_KV=0``
turns it off (the full forward: benchmarks time both). A backbone that cannot take a cache falls
back to the full forward with one log line.
"""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import torch

log = logging.getLogger(__name__)

PREFIX_KV_ENV = "RELDISTILL_TEACHER_PREFIX_KV"
MIN_PREFIX = 8  # shared tokens below which the full forward is as good


def enabled() -> bool:
    return os.environ.get(PREFIX_KV_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def common_prefix(ids: list[list[int]]) -> int:
    """How many leading tokens every row shares, leaving at least one token of its own in each row."""
    if not ids:
        return 0
    first, n = ids[0], min(len(r) for r in ids) - 1
    p = 0
    while p < n and all(r[p] == first[p] for r in ids):
        p += 1
    return p


def score(model, ids: list[list[int]], batches: list[list[int]], pad_id: int, device, advance=lambda k=1: None
          ) -> np.ndarray | None:
    """Logits of every row of ``ids`` (the ``CrossEncoder``'s), the shared prefix computed once; None when
    the rows share fewer than ``MIN_PREFIX`` tokens or the backbone takes no KV cache (run the full forward)."""
    p = common_prefix(ids)
    if p < MIN_PREFIX:
        return None
    out = np.zeros(len(ids), dtype=np.float32)
    bb, head = model.backbone, model.head
    try:
        prefix = bb(input_ids=torch.tensor([ids[0][:p]], device=device), use_cache=True).past_key_values
        if prefix is None or not hasattr(prefix, "batch_repeat_interleave"):
            return None
    except (TypeError, ValueError, AttributeError, NotImplementedError) as e:
        log.info("teacher prefix cache unavailable (%s: %s): full forward", type(e).__name__, e)
        return None
    for b in batches:
        rows = [ids[i][p:] for i in b]
        n, length = len(rows), max(len(r) for r in rows)
        inp = torch.full((n, length), pad_id, dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        for j, r in enumerate(rows):
            inp[j, :len(r)] = torch.tensor(r)
            mask[j, :len(r)] = 1
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(n)
        attn = torch.cat([torch.ones((n, p), dtype=torch.long), mask], dim=1)
        pos = (p + torch.arange(length))[None].expand(n, length)
        o = bb(input_ids=inp.to(device), attention_mask=attn.to(device), position_ids=pos.to(device),
               past_key_values=cache, use_cache=True)
        hidden = o.last_hidden_state if hasattr(o, "last_hidden_state") else o[0]
        last = hidden[torch.arange(n, device=hidden.device), (mask.sum(1) - 1).to(hidden.device)]
        out[b] = head(last).float().cpu().numpy()
        advance(n)
    return out
