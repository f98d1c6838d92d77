"""The order systems are listed in, in every table and plot of a report, and each system's stable colour."""

from __future__ import annotations

SYSTEM_ORDER = ("bm25", "dense-base", "dense-human", "dense-distilled", "hybrid-base", "hybrid-distilled",
                "hybrid-base+rerank", "hybrid-distilled+rerank", "teacher")


def system_color(system: str) -> int:
    """A stable palette index per system, so a system has one colour in every plot."""
    return SYSTEM_ORDER.index(system) if system in SYSTEM_ORDER else len(SYSTEM_ORDER)


def ordered(systems) -> list[str]:
    """``systems`` in SYSTEM_ORDER, the others after them by name."""
    rank = {s: i for i, s in enumerate(SYSTEM_ORDER)}
    return sorted(systems, key=lambda s: (rank.get(s, len(rank)), s))
