"""reldistill.settings: one Runtime resolved at the edge — the recipe's student: section, the environment over it,
explicit overrides last; bad values are one sentence naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from reldistill.errors import UserError
from reldistill.recipe.student import StudentConfig
from reldistill.settings import Runtime


def test_the_library_default_is_the_no_environment_behaviour():
    r = Runtime()
    assert Runtime.from_env({}) == r
    assert (r.student_backend, r.student_query_backend, r.student_int8, r.student_precision) == ("auto", "auto", "off", "auto")
    assert r.teacher_int8 is None and r.teacher_prefix_kv and r.teacher_memo_pairs == 100_000
    assert r.cpu_bf16 and r.gguf_cache and not r.hub_offline and not r.threads_pinned and r.world_size == 1
    assert r.cache_dir == Path.home() / ".cache" / "reldistill" and r.recorded_env == ()


def test_the_environment_wins_over_the_recipe_and_overrides_win_over_both():
    student = StudentConfig(backend="onnx", query_backend="openvino", int8="auto")
    assert Runtime.from_env({}, student=student).student_backend == "onnx"
    r = Runtime.from_env({"RELDISTILL_STUDENT_BACKEND": "torch", "RELDISTILL_STUDENT_INT8": "OFF"}, student=student)
    assert (r.student_backend, r.student_query_backend, r.student_int8) == ("torch", "openvino", "off")
    r = Runtime.from_env({"RELDISTILL_STUDENT_BACKEND": "torch"}, student=student, student_backend="openvino",
                         teacher_prefix_kv=False)
    assert r.student_backend == "openvino" and not r.teacher_prefix_kv


def test_every_variable_is_read():
    r = Runtime.from_env({"RELDISTILL_STUDENT_QUERY_BACKEND": "onnx", "RELDISTILL_STUDENT_PRECISION": "bf16",
                          "RELDISTILL_TEACHER_INT8": "Auto", "RELDISTILL_TEACHER_PREFIX_KV": "off",
                          "RELDISTILL_TEACHER_MEMO_PAIRS": "12", "RELDISTILL_CPU_BF16": "0", "RELDISTILL_CACHE": "/tmp/c",
                          "RELDISTILL_NO_GGUF_CACHE": "1", "HF_HUB_OFFLINE": "true", "OMP_NUM_THREADS": "3",
                          "WORLD_SIZE": "2", "RELDISTILL_LOG": "INFO", "RELDISTILL_API_KEY": "a-secret-key", "HOME": "/x"})
    assert (r.student_query_backend, r.student_precision, r.teacher_int8) == ("onnx", "bfloat16", "auto")
    assert not r.teacher_prefix_kv and r.teacher_memo_pairs == 12 and not r.cpu_bf16 and r.cache_dir == Path("/tmp/c")
    assert not r.gguf_cache and r.hub_offline and r.threads_pinned and r.world_size == 2 and r.log_level == "INFO"
    assert r.api_key == "a-secret-key" and "a-secret-key" not in repr(r)
    assert dict(r.recorded_env) == {k: v for k, v in [("OMP_NUM_THREADS", "3"), ("RELDISTILL_CACHE", "/tmp/c"),
                                                      ("RELDISTILL_CPU_BF16", "0"), ("RELDISTILL_LOG", "INFO"),
                                                      ("RELDISTILL_NO_GGUF_CACHE", "1"),
                                                      ("RELDISTILL_STUDENT_PRECISION", "bf16"),
                                                      ("RELDISTILL_STUDENT_QUERY_BACKEND", "onnx"),
                                                      ("RELDISTILL_TEACHER_INT8", "Auto"),
                                                      ("RELDISTILL_TEACHER_MEMO_PAIRS", "12"),
                                                      ("RELDISTILL_TEACHER_PREFIX_KV", "off")]}


@pytest.mark.parametrize("env, sentence", [
    ({"RELDISTILL_STUDENT_BACKEND": "tensorrt"},
     "RELDISTILL_STUDENT_BACKEND must be one of auto, torch, onnx, openvino — got 'tensorrt'."),
    ({"RELDISTILL_STUDENT_QUERY_BACKEND": "cuda"},
     "RELDISTILL_STUDENT_QUERY_BACKEND must be one of auto, torch, onnx, openvino — got 'cuda'."),
    ({"RELDISTILL_STUDENT_INT8": "yes"},
     "RELDISTILL_STUDENT_INT8 must be auto (int8 where its dev nDCG@10 gate passed) or off — got 'yes'."),
    ({"RELDISTILL_STUDENT_PRECISION": "half"},
     "$RELDISTILL_STUDENT_PRECISION must be one of auto, float32 (fp32), bfloat16 (bf16) — got 'half'."),
    ({"RELDISTILL_TEACHER_INT8": "maybe"}, "$RELDISTILL_TEACHER_INT8 must be auto or off, got 'maybe'."),
    ({"RELDISTILL_TEACHER_MEMO_PAIRS": "lots"}, "$RELDISTILL_TEACHER_MEMO_PAIRS must be a whole number of pairs, got 'lots'."),
    ({"WORLD_SIZE": "two"}, "$WORLD_SIZE must be a whole number of processes, got 'two'."),
])
def test_bad_values_are_one_sentence(env, sentence):
    with pytest.raises(UserError) as e:
        Runtime.from_env(env)
    assert str(e.value) == sentence


def test_unknown_overrides_are_a_programming_error():
    with pytest.raises(TypeError, match="student_backnd"):
        Runtime.from_env({}, student_backnd="torch")
