"""Fixtures the retrieval tests share: a small run (index + tiny student) built once per test module."""

import pytest

from tests.retrieval_testkit import small_run


@pytest.fixture(scope="module")
def run(tmp_path_factory, esci_dir):
    return small_run(tmp_path_factory, esci_dir)
