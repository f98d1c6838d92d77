"""Pair → token ids: prompt template, truncation of the product text first, pad handling, length buckets."""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

# Existing non-EOS tokens that are safe to use as padding (Llama-3 ships no pad token).
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|reserved_special_token_0|>", "<pad>", "[PAD]", "<|pad|>")


def choose_pad_token(tokenizer) -> None:
    """Give ``tokenizer`` a pad token that is not its EOS (in place); never adds a new vocabulary entry.

    Padding positions are masked out and pooling uses the attention mask, so any non-EOS id works;
    what matters is that a real EOS is never confused with padding.
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
        return
    vocab = tokenizer.get_vocab()
    for tok in PAD_CANDIDATES:
        if tok in vocab and vocab[tok] != eos:
            tokenizer.pad_token = tok
            return
    for tok in (tokenizer.unk_token, tokenizer.bos_token):
        if tok is not None and vocab.get(tok) != eos:
            tokenizer.pad_token = tok
            return
    for tok, idx in sorted(vocab.items(), key=lambda kv: kv[1]):  # last resort: the first non-EOS id
        if idx != eos:
            tokenizer.pad_token = tok
            log.warning("tokenizer has no pad/unk token; padding with %r (masked out)", tok)
            return


class PairEncoder:
    """Encode (query, product text) pairs with the recipe's template and max length.

    The token ids of the last ``text_memo`` product texts are kept (LRU), so a text counted for a rerank's
    budget (:meth:`text_ids`) is not tokenized again when it is scored.
    """

    text_memo = 4096

    def __init__(self, tokenizer, template: str, max_length: int, padding_side: str = "left"):
        choose_pad_token(tokenizer)
        self._text_ids: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()
        self.tok = tokenizer
        self.max_length = max_length
        self.padding_side = padding_side
        self.template = template
        self.before_text, self.after_text = template.split("{text}", 1)
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", True) else []

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tok(list(texts), add_special_tokens=False)["input_ids"]

    def text_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each product text alone (no special tokens); texts seen lately are not tokenized again."""
        texts = [str(t) for t in texts]
        with self._lock:
            known = [self._text_ids.get(t) for t in texts]
        todo = list(dict.fromkeys(t for t, k in zip(texts, known) if k is None))
        if todo:
            fresh = dict(zip(todo, self._ids(todo)))
            with self._lock:
                for t, ids in fresh.items():
                    self._text_ids[t] = ids
                    self._text_ids.move_to_end(t)
                while len(self._text_ids) > self.text_memo:
                    self._text_ids.popitem(last=False)
            known = [fresh[t] if k is None else k for t, k in zip(texts, known)]
        return known

    def encode(self, queries: Sequence[str], texts: Sequence[str]) -> list[list[int]]:
        """Token ids per pair (no padding), at most ``max_length``; the product text is cut first."""
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} texts")
        if not len(queries):
            return []
        heads = [self.before_text.replace("{query}", q) for q in queries]
        tails = [self.after_text.replace("{query}", q) for q in queries]
        h_ids, t_ids, x_ids = self._ids(heads), self._ids(tails), self.text_ids(texts)
        out = []
        budget = self.max_length - len(self.bos)
        for h, x, t in zip(h_ids, x_ids, t_ids):
            fixed = len(h) + len(t)
            if fixed > budget - 4:  # a huge query: keep the start of the head and the whole tail
                keep = max(budget - len(t) - 4, 1)
                h = h[:keep]
                fixed = len(h) + len(t)
            room = max(budget - fixed, 0)
            out.append((self.bos + h + x[:room] + t)[: self.max_length])
        return out

    def collate(self, ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Pad a batch to its longest row (left or right) with the non-EOS pad id; mask marks real tokens."""
        width = max(len(r) for r in ids)
        pad = self.tok.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, r in enumerate(ids):
            if self.padding_side == "left":
                input_ids[i, width - len(r):] = torch.tensor(r)
                mask[i, width - len(r):] = 1
            else:
                input_ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of similar length (sorted, longest first) — minimal padding, stable order."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def balanced_batches(rows: Sequence[int], lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """``rows`` sorted longest first, cut into ceil(n / batch_size) batches of near-equal size (no runt batch)."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return []
    order = rows[np.argsort(-np.asarray([lengths[i] for i in rows]), kind="stable")]
    return [b for b in np.array_split(order, math.ceil(len(order) / batch_size)) if len(b)]
