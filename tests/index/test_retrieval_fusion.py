"""Reciprocal Rank Fusion on hand-checked rankings."""

import pytest

from reldistill.errors import UserError
from reldistill.index.fusion import rrf_fuse


def test_rrf_hand_checked_scores_and_order():
    fused = rrf_fuse({"bm25": ["a", "b", "c"], "dense": [("c", 0.9), ("a", 0.5), ("d", 0.1)]}, k=60)
    got = dict(fused)
    # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63
    assert got["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert got["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert got["b"] == pytest.approx(1 / 62)
    assert got["d"] == pytest.approx(1 / 63)
    assert [p for p, _ in fused] == ["a", "c", "b", "d"]


def test_rrf_weights_depth_and_k():
    fused = rrf_fuse({"x": ["a", "b"], "y": ["b", "a"]}, k=0, weights={"y": 3.0})
    assert dict(fused) == pytest.approx({"b": 1 / 2 + 3 / 1, "a": 1 / 1 + 3 / 2})
    assert fused[0][0] == "b"
    cut = rrf_fuse({"x": ["a", "b", "c"], "y": ["c"]}, k=1, depth={"x": 1})
    assert dict(cut) == pytest.approx({"a": 1 / 2, "c": 1 / 2})
    assert [p for p, _ in cut] == ["a", "c"]  # tie broken by best single rank, then id


def test_rrf_tie_breaks_and_duplicates():
    fused = rrf_fuse({"x": ["b", "a", "b"], "y": ["a", "b"]})
    assert dict(fused)["b"] == pytest.approx(1 / 61 + 1 / 62)  # the repeated b counts once
    assert [p for p, _ in fused] == ["a", "b"]  # equal scores; both best rank 1 → id order
    assert rrf_fuse({"x": []}) == []


def test_rrf_rejects_unknown_weights():
    with pytest.raises(UserError, match="unknown retriever"):
        rrf_fuse({"x": ["a"]}, weights={"z": 1.0})
