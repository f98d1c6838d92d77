"""A distilled student ships the catalog vectors of its kept checkpoint; the index build and eval reuse them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TEST_RUNTIME
from tests.distill_testkit import fake_scores, tiny, tiny_cfg  # noqa: F401 - `tiny` is a fixture


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):  # noqa: F811
    from reldistill.distill.mine import mine_candidates
    from reldistill.distill.train import train_student

    root = tmp_path_factory.mktemp("vectors")
    cands = mine_candidates(tiny["data"], tiny_cfg(tiny), dev_fraction=0.2, seed=3, runtime=TEST_RUNTIME)
    fake_scores(cands).to_parquet(root / "scores.parquet", index=False)
    cfg = tiny_cfg(tiny, max_steps=4, eval_each="steps", eval_steps=0.5, lr=1e-3)
    out = train_student(root / "scores.parquet", root / "student", cfg, tiny["data_cfg"], runtime=TEST_RUNTIME)
    products = tiny["data"].products
    return out, products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist()


@pytest.mark.slow
def test_saved_vectors_are_the_kept_models_encoding(trained):
    from reldistill.student import encode_documents, load_student
    from reldistill.student.catalog_vectors import load_vectors

    out, ids, texts = trained
    vectors = load_vectors(out, ids, texts)
    assert vectors is not None and vectors.shape == (len(ids), 32)
    fresh = encode_documents(load_student(str(out), runtime=TEST_RUNTIME), texts)
    assert np.min(np.sum(vectors * fresh, axis=1)) > 0.999  # same weights → same (normalised) vectors


@pytest.mark.slow
def test_vectors_are_refused_for_another_catalog_or_other_weights(trained, tmp_path):
    import shutil

    from reldistill.student.catalog_vectors import load_vectors

    out, ids, texts = trained
    assert load_vectors(out, ids, texts[:-1] + [texts[-1] + " v2"]) is None
    assert load_vectors(out, ids[:-1], texts[:-1]) is None
    copy = shutil.copytree(out, tmp_path / "copy")
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    assert load_vectors(copy, ids, texts) is None
    (out / "catalog-vectors.json").write_text("{not json")  # unreadable metadata means "encode afresh"
    try:
        assert load_vectors(out, ids, texts) is None
    finally:
        shutil.copy(copy / "catalog-vectors.json", out / "catalog-vectors.json")
    assert load_vectors(out, ids, texts) is not None


@pytest.mark.slow
def test_index_build_and_eval_reuse_them_without_encoding(trained, tiny, tmp_path, monkeypatch):  # noqa: F811
    from reldistill.eval import retrievers
    from reldistill.retrieval import build
    from reldistill.index.dense import DenseIndex
    from reldistill.student import load_student
    from reldistill.student.catalog_vectors import load_vectors

    out, ids, texts = trained

    def no_encoding(*a, **k):
        raise AssertionError("the catalog was encoded again")

    monkeypatch.setattr(build, "encode_catalog", no_encoding)
    monkeypatch.setattr(retrievers, "encode_catalog", no_encoding)
    index_dir = build.build_index(tmp_path / "run", student_path=str(out), data_cfg=tiny["data_cfg"], runtime=TEST_RUNTIME)
    saved = load_vectors(out, ids, texts)
    dense = DenseIndex.load(index_dir)
    assert np.allclose(dense.vector(ids[3]), saved[3])
    emb, source = retrievers.catalog_vectors("dense-distilled", load_student(str(out), runtime=TEST_RUNTIME), str(out), ids, texts)
    assert source.startswith("vectors saved with") and np.allclose(emb, saved)


def test_student_precision_setting():
    import torch

    from reldistill.errors import UserError
    from reldistill.precision import PRECISION_ENV, cpu_has_bf16, student_dtype
    from reldistill.recipe.distill import DistillConfig
    from reldistill.settings import Runtime

    fp32 = Runtime.from_env({PRECISION_ENV: "float32"})
    assert student_dtype(runtime=fp32) == torch.float32 and student_dtype("auto", fp32) == torch.float32
    assert student_dtype("bfloat16", fp32) == torch.bfloat16
    if not torch.cuda.is_available():
        assert student_dtype(runtime=Runtime.from_env({})) == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
        assert student_dtype(runtime=Runtime.from_env({"RELDISTILL_CPU_BF16": "0"})) == torch.float32
    with pytest.raises(UserError, match="distill.precision"):
        DistillConfig(precision="fp8")
    with pytest.raises(UserError, match=r"\$RELDISTILL_STUDENT_PRECISION must be one of .* got 'half'"):
        Runtime.from_env({PRECISION_ENV: "half"})
