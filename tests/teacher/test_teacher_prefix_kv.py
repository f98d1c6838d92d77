"""Teacher scoring with shared prefixes (template, query) run once: same logits as the full forward, parts, fall-back, switch."""

from __future__ import annotations

import numpy as np
import pytest

from reldistill.teacher import prefix_kv
from reldistill.teacher.inputs import balanced_batches
from tests.teacher_testkit import tiny_teacher_dir
from tests.conftest import TEST_RUNTIME

QUERIES = ["red running shoes", "usb c cable", "kids water bottle bpa free", "a", "wireless noise cancelling headphones"] * 3
TEXTS = [f"Brand {i} product title number {i} with {'many ' * (i % 7)}words" for i in range(len(QUERIES))]
# one query with enough rows for a prefix of its own, beside the rows above
GROUPED_Q = QUERIES + ["stainless steel water bottle 32 oz"] * (prefix_kv.MIN_GROUP + 3)
GROUPED_T = TEXTS + [f"Bottle {i} {'insulated ' * (i % 5)}lid" for i in range(prefix_kv.MIN_GROUP + 3)]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from reldistill.recipe.teacher import LM_TEMPLATE
    from reldistill.teacher.inputs import PairEncoder
    from reldistill.teacher.teacher import Teacher

    t = Teacher.load(tiny_teacher_dir(tmp_path_factory, "prefix", seed=3), dtype="float32", int8="off", runtime=TEST_RUNTIME)
    t.encoder = PairEncoder(t.tokenizer, LM_TEMPLATE, 96, "left")  # the demo teacher's template: a long shared instruction
    return t


def _full(teacher, queries, texts, monkeypatch, batch_size=4):
    from reldistill.teacher.teacher import running_with

    with running_with(teacher, teacher_prefix_kv=False):  # the full forward
        return teacher.score_logits(queries, texts, batch_size=batch_size, memo=False)


def test_prefix_scoring_gives_the_full_forwards_logits(teacher, monkeypatch):
    ids = teacher.encoder.encode(QUERIES, TEXTS)
    assert prefix_kv.common_prefix(ids) >= prefix_kv.MIN_PREFIX  # the template's instruction is shared
    calls = []
    real = prefix_kv.score
    monkeypatch.setattr(prefix_kv, "score", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = teacher.score_logits(QUERIES, TEXTS, batch_size=4, memo=False)
    assert calls and fast.dtype == np.float32
    full = _full(teacher, QUERIES, TEXTS, monkeypatch)
    assert len(calls) == 1  # switched off: the full forward
    np.testing.assert_allclose(fast, full, atol=1e-4, rtol=1e-4)
    assert np.std(full) > 1e-3  # the pairs differ, so equal logits say something


def test_a_query_with_many_rows_gets_its_own_longer_prefix_and_the_same_logits(teacher, monkeypatch):
    ids = teacher.encoder.encode(GROUPED_Q, GROUPED_T)
    parts = prefix_kv.plan(ids, GROUPED_Q, 4)
    assert len(parts) == 2  # the big query; the 15 other rows together
    (p_query, b_query), (p_rest, b_rest) = parts
    template_only = prefix_kv.common_prefix(ids)
    assert p_query > p_rest >= template_only >= prefix_kv.MIN_PREFIX  # the query's tokens are shared in its part too
    assert sorted(i for b in b_query for i in b) == list(range(len(QUERIES), len(GROUPED_Q)))
    assert sorted(i for b in b_rest for i in b) == list(range(len(QUERIES)))
    before = teacher.forward_calls
    fast = teacher.score_logits(GROUPED_Q, GROUPED_T, batch_size=4, memo=False)
    assert teacher.forward_calls - before == len(b_query) + len(b_rest)  # one forward per batch (prefixes not counted)
    np.testing.assert_allclose(fast, _full(teacher, GROUPED_Q, GROUPED_T, monkeypatch), atol=1e-4, rtol=1e-4)


def test_batches_are_length_sorted_and_balanced():
    lengths = [5, 9, 7, 3, 8, 6, 4, 10, 2]
    batches = balanced_batches(range(9), lengths, 4)
    assert [len(b) for b in batches] == [3, 3, 3]  # ceil(9/4) = 3 batches, no runt of 1
    flat = [int(i) for b in batches for i in b]
    assert sorted(flat) == list(range(9)) and [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert balanced_batches([], lengths, 4) == []


def test_common_prefix_leaves_each_row_a_token_and_short_prefixes_run_whole(teacher, monkeypatch):
    assert prefix_kv.common_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert prefix_kv.common_prefix([[5, 6], [7, 6]]) == 0
    assert prefix_kv.common_prefix([]) == 0
    assert prefix_kv.plan([[1, 2, 3], [1, 2, 4]], None, 4)[0][0] == 0  # 2 shared tokens: no cache for this part
    from reldistill.teacher.inputs import PairEncoder

    monkeypatch.setattr(teacher, "encoder", PairEncoder(teacher.tokenizer, "{query} / {text}", 96, "left"))
    ids = teacher.encoder.encode(QUERIES, TEXTS)
    assert prefix_kv.common_prefix(ids) < prefix_kv.MIN_PREFIX  # nothing shared by every pair
    fast = teacher.score_logits(QUERIES, TEXTS, batch_size=4, memo=False)  # one part run whole, right-padded
    np.testing.assert_allclose(fast, _full(teacher, QUERIES, TEXTS, monkeypatch), atol=1e-4, rtol=1e-4)


def test_a_backbone_without_a_cache_falls_back_to_the_full_forward(teacher, monkeypatch):
    ids = teacher.encoder.encode(QUERIES, TEXTS)
    real = teacher.model.backbone.forward

    def no_cache(*a, **k):
        out = real(*a, **k)
        out.past_key_values = None
        return out

    monkeypatch.setattr(teacher.model.backbone, "forward", no_cache)
    assert prefix_kv.score(teacher.model, ids, 4, 0, teacher.device, keys=QUERIES) is None
    np.testing.assert_allclose(teacher.score_logits(QUERIES, TEXTS, batch_size=4, memo=False),
                               _full(teacher, QUERIES, TEXTS, monkeypatch), atol=1e-4, rtol=1e-4)
