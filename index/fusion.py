"""Reciprocal Rank Fusion (Cormack, Clarke & Büttcher, SIGIR 2009): score(d) = Σ_r w_r / (k + rank_r(d))."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reldistill.errors import UserError


def _ids(ranking: Sequence) -> list[str]:
    return [str(x[0]) if isinstance(x, (tuple, list)) else str(x) for x in ranking]


def rrf_fuse(rankings: Mapping[str, Sequence[str] | Sequence[tuple[str, float]]], k: int = 60,
             weights: Mapping[str, float] | None = None,
             depth: int | Mapping[str, int] | None = None) -> list[tuple[str, float]]:
    """Fuse best-first rankings (ids, or (id, score) pairs — scores are ignored) into [(id, rrf_score)], best first.

    ``weights`` scales each retriever (default 1); ``depth`` keeps only each ranking's first N items
    (one int for all, or per retriever). Ties break on the best single rank, then on id, so the
    output is deterministic.
    """
    if k < 0:
        raise UserError(f"RRF k must be non-negative, got {k}.")
    weights = dict(weights or {})
    unknown = set(weights) - set(rankings)
    if unknown:
        raise UserError(f"RRF weights name unknown retriever(s) {', '.join(sorted(unknown))}; rankings have {', '.join(rankings)}.")
    scores: dict[str, float] = {}
    best: dict[str, int] = {}
    for name, ranking in rankings.items():
        w = float(weights.get(name, 1.0))
        ids = _ids(ranking)
        cut = depth.get(name) if isinstance(depth, Mapping) else depth
        if cut is not None:
            ids = ids[:cut]
        seen: set[str] = set()
        for rank, pid in enumerate(ids, start=1):
            if pid in seen:  # a retriever listing an id twice counts once, at its best rank
                continue
            seen.add(pid)
            scores[pid] = scores.get(pid, 0.0) + w / (k + rank)
            best[pid] = min(best.get(pid, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))
