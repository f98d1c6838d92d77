"""Fixtures of the student tests: a tiny normalised student and fp32 with a private cache."""

from __future__ import annotations

import pytest

from tests.builders.tiny_student import build_tiny_student


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random normalised sentence-transformers student (test_catalog_vectors uses distill's `tiny`)."""
    return build_tiny_student(tmp_path_factory.mktemp("student"), normalize=True)


@pytest.fixture
def fp32(monkeypatch, tmp_path):
    """fp32 everywhere (OpenVINO would otherwise run bf16 on a bf16 CPU) and a private cache."""
    monkeypatch.setenv("RELDISTILL_STUDENT_PRECISION", "float32")
    monkeypatch.setenv("RELDISTILL_CACHE", str(tmp_path / "cache"))
