"""Caches are keyed by every input: scoring shards by the catalog text, catalog vectors by the precision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TEST_RUNTIME
from tests.teacher_testkit import one_thread
from tests.distill_testkit import build_tiny_student, write_tiny_esci


@pytest.fixture(scope="module")
def tdir(tmp_path_factory):
    from tests.builders.tiny_teacher import build_tiny_teacher

    return build_tiny_teacher(tmp_path_factory.mktemp("keys") / "teacher", seed=1)


@pytest.mark.slow
def test_scoring_shards_are_redone_when_the_catalog_text_changes(tdir, tmp_path):
    """Pairs without a text column take the text from the catalog: another catalog text must not reuse the shards."""
    from reldistill.config import DataConfig
    from reldistill.data.esci import PRODUCTS_FILE
    from reldistill.teacher.score import score_file_stats

    esci = write_tiny_esci(tmp_path / "esci")
    pairs = pd.DataFrame({"query": ["red shoe"] * 6, "product_id": [f"P{i:03d}" for i in range(6)]})
    pairs.to_parquet(tmp_path / "pairs.parquet", index=False)
    kw = dict(batch_size=4, dtype="fp32", shard_size=3, progress=False, runtime=TEST_RUNTIME)
    with one_thread():
        first = score_file_stats(tdir, tmp_path / "pairs.parquet", tmp_path / "s.parquet", DataConfig(path=str(esci)), **kw)
        before = pd.read_parquet(first["out"])["teacher_logit"].to_numpy()
        products = pd.read_parquet(esci / PRODUCTS_FILE)
        products["product_title"] = "completely different " + products["product_title"]
        products.to_parquet(esci / PRODUCTS_FILE, index=False)  # same pairs file, other catalog text
        second = score_file_stats(tdir, tmp_path / "pairs.parquet", tmp_path / "s.parquet", DataConfig(path=str(esci)), **kw)
    assert second["scored_now"] == 6  # nothing reused from the other catalog
    assert not np.allclose(pd.read_parquet(second["out"])["teacher_logit"].to_numpy(), before)


@pytest.mark.slow
def test_catalog_vectors_are_not_reused_under_another_precision(tmp_path):
    from reldistill.settings import Runtime
    from reldistill.student.catalog_vectors import load_vectors, save_vectors

    model = build_tiny_student(tmp_path / "student")
    ids, texts = ["P1", "P2"], ["red shoe", "blue hat"]
    vectors = np.eye(2, 32, dtype=np.float32)
    bf16, fp32 = Runtime(student_precision="bfloat16"), Runtime(student_precision="float32")
    save_vectors(model, ids, texts, vectors, runtime=bf16)
    assert load_vectors(model, ids, texts, runtime=bf16) is not None
    assert load_vectors(model, ids, texts, runtime=fp32) is None  # encoded in bf16: an fp32 run encodes afresh


def test_one_model_identity_and_one_catalog_key(tmp_path):
    """Index manifests, eval's and the index build's vector caches name a student the same way: by its weights."""
    import shutil

    from reldistill.artifacts import file_fingerprint
    from reldistill.settings import Runtime
    from reldistill.student.catalog_vectors import cache_key
    from reldistill.student.identity import model_identity, weights_digest

    model = build_tiny_student(tmp_path / "student")
    ident = model_identity(model)
    # the format indexes already record: <folder name>@<sha256 of model.safetensors>[:12]
    assert ident == f"{model.name}@{file_fingerprint(model / 'model.safetensors')[:12]}"
    assert weights_digest(model) == file_fingerprint(model / "model.safetensors")
    copy = shutil.copytree(model, tmp_path / "copy" / model.name)
    assert model_identity(copy) == ident  # the same weights wherever the folder lives
    (tmp_path / "no-weights").mkdir()
    assert weights_digest(tmp_path / "no-weights") is None and model_identity(tmp_path / "no-weights") == str(tmp_path / "no-weights")
    ids, texts = ["P1", "P2"], ["red shoe", "blue hat"]
    fp32 = Runtime(student_precision="float32")
    key = cache_key(model, ids, texts, runtime=fp32)
    assert key.startswith(ident + "-torch-") and key.endswith("-float32")
    assert cache_key(copy, ids, texts, runtime=fp32) == key
    assert (cache_key(model, ids, ["red shoe", "blue hats"], runtime=fp32) != key
            and cache_key(model, ids, texts, "onnx", runtime=fp32) != key)
    assert cache_key(model, ids, texts, runtime=Runtime(student_precision="bfloat16")) != key  # eval's cache too is keyed by the encoding precision
