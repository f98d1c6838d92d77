"""Choose the served configuration on dev nDCG@10, preferring the simpler system unless the gain is real.

Candidates come in levels of parts: one retriever (bm25, dense), two fused (hybrid with each RRF
weight of the grid), three (hybrid + teacher rerank of the fused top rerank_k). The best one-part
system is the starting choice; the best system of each next level replaces it only when, on the dev
queries both were scored on, its mean nDCG@10 is higher by at least ``min_gain`` AND a paired test
gives p < ``max_p``. A grid maximum on a few hundred dev queries is partly noise; the two conditions
keep that noise from buying a slower system (rerank costs a teacher forward per candidate).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reldistill.eval.significance import paired_test
from reldistill.retrieval.serving import Serving


@dataclasses.dataclass
class Candidate:
    serving: Serving
    per_query: dict[str, float]  # dev nDCG@10 by query id

    @property
    def parts(self) -> int:
        return {"bm25": 1, "dense": 1, "hybrid": 2, "rerank": 3}[self.serving.mode]

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.per_query.values()))) if self.per_query else float("nan")


def choose(candidates: list[Candidate], min_gain: float, max_p: float, test: str = "student") -> tuple[Candidate, list[str]]:
    """(the chosen candidate, one line per decision); ties keep the earlier candidate of a level."""
    if not candidates:
        raise ValueError("no candidate configuration to choose from")
    levels = sorted({c.parts for c in candidates})
    best_of = {lv: max((c for c in candidates if c.parts == lv), key=lambda c: c.mean) for lv in levels}
    current = best_of[levels[0]]
    why = [f"start: {current.serving.name} (dev nDCG@10 {current.mean:.4f}), best of the {levels[0]}-part systems"]
    for lv in levels[1:]:
        cand = best_of[lv]
        common = sorted(set(cand.per_query) & set(current.per_query))
        a = np.array([current.per_query[q] for q in common])
        b = np.array([cand.per_query[q] for q in common])
        t = paired_test(a, b, test, max_p)
        take = t["delta"] >= min_gain and t["significant"]
        why.append(f"{cand.serving.name} vs {current.serving.name} on {len(common)} dev queries: "
                   f"Δ nDCG@10 {t['delta']:+.4f}, p={t['p_value']:.3g} → "
                   + ("take it" if take else f"keep {current.serving.name} (needs Δ ≥ {min_gain:g} and p < {max_p:g})"))
        if take:
            current = cand
    return current, why
