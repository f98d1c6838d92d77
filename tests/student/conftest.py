"""Fixtures of the student tests: a tiny normalised student and an fp32 runtime with a private cache."""

from __future__ import annotations

import dataclasses

import pytest

from reldistill.settings import Runtime
from tests.builders.tiny_student import build_tiny_student
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random normalised sentence-transformers student (test_catalog_vectors uses distill's `tiny`)."""
    return build_tiny_student(tmp_path_factory.mktemp("student"), normalize=True)


@pytest.fixture
def fp32(tmp_path) -> Runtime:
    """The tests' runtime in fp32 everywhere (OpenVINO would otherwise run bf16 on a bf16 CPU), with a private cache."""
    return dataclasses.replace(TEST_RUNTIME, student_precision="float32", cache_dir=tmp_path / "cache")
