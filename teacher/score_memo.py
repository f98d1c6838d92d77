"""Teacher logits already computed, by (teacher identity, exact pair input): a bounded LRU shared in one process.

The served rerank (`SearchPipeline` mode rerank, `POST /rerank`), eval and the scoring stage all call
`Teacher.score_logits`, which asks the teacher's memo first and runs the model only on the pairs it has not seen.
Each `Teacher` holds its own memo (no process-wide state).
A key is the teacher's identity (its artifact's manifest digest, dtype, int8 state, prompt template,
max_length, padding side) with the query and the product text, so a pair scored by another teacher,
dtype or template is never reused. The memo is bounded by pairs (least recently used dropped first):
``Runtime.teacher_memo_pairs`` (``$RELDISTILL_TEACHER_MEMO_PAIRS``, default 100,000 pairs, a few tens of MB), 0
turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

from reldistill.settings import DEFAULT_MEMO_PAIRS


def pair_key(identity: str, query: str, text: str) -> bytes:
    """The memo key of one (query, product text) pair under one teacher identity (16 bytes)."""
    return hashlib.blake2b(f"{identity}\0{query}\0{text}".encode(), digest_size=16).digest()


class ScoreMemo:
    """Thread-safe LRU of teacher logits, at most ``max_pairs`` entries (0: remembers nothing)."""

    def __init__(self, max_pairs: int = DEFAULT_MEMO_PAIRS):
        self.max_pairs = max(int(max_pairs), 0)
        self._d: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._d)

    def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        """The remembered logit of each key (None where unknown); found keys become the most recent."""
        out: list[float | None] = []
        with self._lock:
            for k in keys:
                v = self._d.get(k)
                if v is not None:
                    self._d.move_to_end(k)
                out.append(v)
            found = sum(v is not None for v in out)
            self.hits += found
            self.misses += len(out) - found
        return out

    def put_many(self, keys: Sequence[bytes], values: Sequence[float]) -> None:
        if not self.max_pairs:
            return
        with self._lock:
            for k, v in zip(keys, values):
                self._d[k] = float(v)
                self._d.move_to_end(k)
            while len(self._d) > self.max_pairs:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.hits = self.misses = 0


@contextlib.contextmanager
def memo_off(memo: ScoreMemo):
    """Within this block ``memo`` (a teacher's) neither answers nor remembers (latency benchmarks time the model)."""
    old, memo.max_pairs = memo.max_pairs, 0
    try:
        yield
    finally:
        memo.max_pairs = old
