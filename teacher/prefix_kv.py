"""Teacher scoring with shared prefixes run once: exact, and fewer tokens per pair.

Every pair starts with the same tokens (BOS + the template's instruction up to the query: 31 of the
demo teacher's ~80 tokens per pair), and the pairs of one query share the query's tokens too. ``score``
splits the rows into parts — each query with at least ``MIN_GROUP`` rows in the call is a part whose
prefix runs to the end of the query (template + query + the words before the text), the other rows
one part with the template's prefix — runs each part's prefix once with the decoder's KV cache, then
each length-sorted batch of the part runs only its rows' own tokens (right-padded, positions continuing
after the prefix) against a copy of that cache, and pools each row's last real token. Since attention
is causal, the logits are those of the full forward up to fp32 rounding. A part whose rows share fewer
than ``MIN_PREFIX`` tokens runs whole (no cache). ``Runtime.teacher_prefix_kv`` (``$RELDISTILL_TEACHER_PREFIX_KV=0``)
turns it off (the full forward: benchmarks time both by passing a runtime with it on and off). A backbone that cannot take a cache falls back to the full
forward with one log line.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
import torch

from reldistill.teacher.inputs import balanced_batches

log = logging.getLogger(__name__)

MIN_PREFIX = 8  # shared tokens below which the full forward is as good
MIN_GROUP = 8  # rows of one query that get a prefix of their own (template + query)


def common_prefix(ids: list[list[int]]) -> int:
    """How many leading tokens every row shares, leaving at least one token of its own in each row."""
    if not ids:
        return 0
    first, n = ids[0], min(len(r) for r in ids) - 1
    p = 0
    while p < n and all(r[p] == first[p] for r in ids):
        p += 1
    return p


def plan(ids: list[list[int]], keys: Sequence[str] | None, batch_size: int) -> list[tuple[int, list[np.ndarray]]]:
    """The parts of a call: (shared prefix length, batches of row indices). Rows of a key (query) with at least
    ``MIN_GROUP`` rows are a part of their own; the rest share one part; a prefix under ``MIN_PREFIX`` is 0."""
    lengths = [len(r) for r in ids]
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys if keys is not None else [""] * len(ids)):  # no keys: one group, the template's prefix
        groups.setdefault(k, []).append(i)
    big = [g for g in groups.values() if len(g) >= MIN_GROUP]
    rest = sorted(i for g in groups.values() if len(g) < MIN_GROUP for i in g)
    parts = []
    for rows in [*big, rest]:
        if rows:
            p = common_prefix([ids[i] for i in rows])
            parts.append((p if p >= MIN_PREFIX else 0, balanced_batches(rows, lengths, batch_size)))
    return parts


def score(model, ids: list[list[int]], batch_size: int, pad_id: int, device, advance=lambda k=1: None,
          keys: Sequence[str] | None = None) -> tuple[np.ndarray, int] | None:
    """(logits of every row of ``ids``, forward passes run) — the ``CrossEncoder``'s, each part's shared prefix
    computed once (``keys``: each row's query, grouping rows that share it); None when the backbone takes no
    KV cache (run the full forward)."""
    out = np.zeros(len(ids), dtype=np.float32)
    calls = 0
    try:
        for p, batches in plan(ids, keys, batch_size):
            prefix = None
            if p:
                first = batches[0][0]
                prefix = model.backbone(input_ids=torch.tensor([ids[first][:p]], device=device), use_cache=True).past_key_values
                if prefix is None or not hasattr(prefix, "batch_repeat_interleave"):
                    return None
            for b in batches:
                out[b] = _batch(model, [ids[i][p:] for i in b], p, prefix, pad_id, device)
                calls += 1
                advance(len(b))
    except (TypeError, ValueError, AttributeError, NotImplementedError) as e:
        log.info("teacher prefix cache unavailable (%s: %s): full forward", type(e).__name__, e)
        return None
    return out, calls


def _batch(model, rows: list[list[int]], p: int, prefix, pad_id: int, device) -> np.ndarray:
    """Logits of ``rows`` (each row's own tokens, after ``p`` prefix tokens held in ``prefix``)."""
    n, length = len(rows), max(len(r) for r in rows)
    inp = torch.full((n, length), pad_id, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    for j, r in enumerate(rows):
        inp[j, :len(r)] = torch.tensor(r)
        mask[j, :len(r)] = 1
    cache = None
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(n)
    attn = torch.cat([torch.ones((n, p), dtype=torch.long), mask], dim=1)
    pos = (p + torch.arange(length))[None].expand(n, length)
    o = model.backbone(input_ids=inp.to(device), attention_mask=attn.to(device), position_ids=pos.to(device),
                       past_key_values=cache, use_cache=cache is not None)
    hidden = o.last_hidden_state if hasattr(o, "last_hidden_state") else o[0]
    last = hidden[torch.arange(n, device=hidden.device), (mask.sum(1) - 1).to(hidden.device)]
    return model.head(last).float().cpu().numpy()
