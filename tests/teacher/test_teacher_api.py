"""Teacher API on the tiny random teacher: load, score, rerank, pad handling, broken artifacts."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from reldistill.errors import UserError
from reldistill.rerank import Reranker
from tests.conftest import TEST_RUNTIME

QUERIES = ["red running shoes", "red running shoes", "green tea", "usb c cable"]
TEXTS = ["nike running shoes | red", "a blue coffee mug " * 20, "organic green tea bags", "usb c charger cable 6ft"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.builders.tiny_teacher import build_tiny_teacher

    return build_tiny_teacher(tmp_path_factory.mktemp("teacher") / "teacher", seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from reldistill.teacher import Teacher

    return Teacher.load(tiny_dir, dtype="float32", runtime=TEST_RUNTIME)


def test_score_pairs_are_probabilities_in_input_order(tiny):
    s = tiny.score_pairs(QUERIES, TEXTS, batch_size=2)
    assert s.shape == (4,) and s.dtype == np.float32
    assert np.all((s >= 0) & (s <= 1))
    one_by_one = np.array([tiny.score_pairs([q], [t])[0] for q, t in zip(QUERIES, TEXTS)])
    np.testing.assert_allclose(s, one_by_one, atol=1e-5)  # bucketing/padding does not change scores
    assert len(set(np.round(s, 6))) > 1


def test_padding_side_and_merge_do_not_change_scores(tiny, tiny_dir):
    from reldistill.teacher import Teacher

    left = tiny.score_pairs(QUERIES, TEXTS)
    tiny.encoder.padding_side = "right"
    try:
        right = tiny.score_pairs(QUERIES, TEXTS)
    finally:
        tiny.encoder.padding_side = "left"
    np.testing.assert_allclose(left, right, atol=1e-5)
    unmerged = Teacher.load(tiny_dir, dtype="float32", merge_lora=False, runtime=TEST_RUNTIME).score_pairs(QUERIES, TEXTS)
    np.testing.assert_allclose(left, unmerged, atol=1e-5)


def test_pad_token_is_not_eos_and_eos_in_text_is_real(tiny):
    tok = tiny.tokenizer
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    ids = tiny.encoder.encode(["q"], [f"shoes {tok.eos_token}"])[0]
    assert tok.eos_token_id in ids  # a real EOS inside the text stays a real, attended token
    batch = tiny.encoder.collate([ids, ids[:3]])
    assert batch["attention_mask"][0].sum() == len(ids)


def test_llama3_style_tokenizer_without_pad_gets_a_non_eos_pad():
    from reldistill.teacher.inputs import choose_pad_token
    from tests.builders.tiny_teacher import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    assert tok.pad_token is None
    choose_pad_token(tok)
    assert tok.pad_token == "<|finetune_right_pad_id|>" and tok.pad_token_id != tok.eos_token_id


def test_truncation_keeps_the_prompt_suffix(tiny):
    enc = tiny.encoder
    ids = enc.encode(["q " * 500, "shoes"], ["long text " * 500, "x " * 500])
    suffix = tiny.tokenizer(enc.template.split("{text}", 1)[1], add_special_tokens=False)["input_ids"]
    for row in ids:
        assert len(row) <= enc.max_length
        assert row[-len(suffix):] == suffix


def test_reranker_protocol_and_order(tiny):
    from reldistill.teacher.rerank import TeacherReranker

    rr = TeacherReranker(tiny)
    assert isinstance(rr, Reranker) and rr.name.startswith("teacher:")
    cands = [(f"p{i}", t) for i, t in enumerate(TEXTS)]
    res = rr.rerank("red running shoes", cands, top_k=3)
    assert [r.rank for r in res] == [1, 2, 3]
    assert [r.score for r in res] == sorted((r.score for r in res), reverse=True)
    full = tiny.score_pairs(["red running shoes"] * 4, TEXTS)
    for r in res:
        assert r.id == f"p{r.index}" and abs(r.score - full[r.index]) < 1e-6
    assert rr.rerank("q", []) == []
    assert len(rr.rerank("q", cands)) == 4


def test_missing_adapter_and_truncated_head_are_user_errors(tiny_dir, tmp_path):
    from reldistill.teacher import Teacher

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(UserError, match="adapter"):
        Teacher.load(broken, runtime=TEST_RUNTIME)
    shutil.rmtree(broken)
    shutil.copytree(tiny_dir, broken)
    head = broken / "head.safetensors"
    head.write_bytes(head.read_bytes()[:40])
    with pytest.raises(UserError, match="truncated"):
        Teacher.load(broken, runtime=TEST_RUNTIME)
    with pytest.raises(UserError, match="does not exist"):
        Teacher.load(tmp_path / "nope", runtime=TEST_RUNTIME)
