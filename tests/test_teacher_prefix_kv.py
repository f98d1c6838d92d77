"""Teacher scoring with the template's shared prefix run once: same logits as the full forward, fall-back, switch."""

from __future__ import annotations

import numpy as np
import pytest

from reldistill.teacher import prefix_kv
from teacher_testkit import tiny_teacher_dir

QUERIES = ["red running shoes", "usb c cable", "kids water bottle bpa free", "a", "wireless noise cancelling headphones"] * 3
TEXTS = [f"Brand {i} product title number {i} with {'many ' * (i % 7)}words" for i in range(len(QUERIES))]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from reldistill.recipe.teacher import LM_TEMPLATE
    from reldistill.teacher.inputs import PairEncoder
    from reldistill.teacher.teacher import Teacher

    t = Teacher.load(tiny_teacher_dir(tmp_path_factory, "prefix", seed=3), dtype="float32", int8="off")
    t.encoder = PairEncoder(t.tokenizer, LM_TEMPLATE, 96, "left")  # the demo teacher's template: a long shared instruction
    return t


def test_prefix_scoring_gives_the_full_forwards_logits(teacher, monkeypatch):
    ids = teacher.encoder.encode(QUERIES, TEXTS)
    assert prefix_kv.common_prefix(ids) >= prefix_kv.MIN_PREFIX  # the template's instruction is shared
    calls = []
    real = prefix_kv.score
    monkeypatch.setattr(prefix_kv, "score", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = teacher.score_logits(QUERIES, TEXTS, batch_size=4, memo=False)
    assert calls and fast.dtype == np.float32
    monkeypatch.setenv(prefix_kv.PREFIX_KV_ENV, "0")
    full = teacher.score_logits(QUERIES, TEXTS, batch_size=4, memo=False)
    assert len(calls) == 1  # switched off: the full forward
    np.testing.assert_allclose(fast, full, atol=1e-4, rtol=1e-4)
    assert np.std(full) > 1e-3  # the pairs differ, so equal logits say something


def test_common_prefix_leaves_each_row_a_token_and_short_prefixes_fall_back(teacher):
    assert prefix_kv.common_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert prefix_kv.common_prefix([[5, 6], [7, 6]]) == 0
    assert prefix_kv.common_prefix([]) == 0
    ids = [[1, 2, 3], [1, 2, 4]]
    assert prefix_kv.score(teacher.model, ids, [[0, 1]], 0, teacher.device) is None  # 2 shared tokens: full forward
