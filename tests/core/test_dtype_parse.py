"""One dtype parser (reldistill.precision.parse_dtype) behind every dtype setting."""

from __future__ import annotations

import pytest
import torch

from reldistill.errors import UserError
from reldistill.precision import parse_dtype, resolve_dtype
from reldistill.recipe.distill import DistillConfig
from reldistill.recipe.eval import EvalConfig
from reldistill.recipe.teacher import ScoreConfig, TrainConfig

SPELLINGS = {"fp32": "float32", "float32": "float32", "FP32": "float32", " Float32 ": "float32",
             "bf16": "bfloat16", "bfloat16": "bfloat16", "BF16": "bfloat16", "auto": "auto", "AUTO": "auto"}


@pytest.mark.parametrize(("given", "name"), SPELLINGS.items())
def test_every_setting_accepts_the_same_spellings(given, name):
    assert parse_dtype(given) == name
    assert TrainConfig(precision=given).precision == name
    assert ScoreConfig(dtype=given).dtype == name
    assert DistillConfig(precision=given).precision == name
    assert EvalConfig(teacher_dtype=given).teacher_dtype == name
    if name != "auto":
        assert resolve_dtype(given) == getattr(torch, name)


@pytest.mark.parametrize("bad", ["fp16", "half", "int8", "", "float"])
def test_every_setting_rejects_the_same_spellings_naming_its_key(bad):
    for make, key in ((lambda: TrainConfig(precision=bad), "train.precision"), (lambda: ScoreConfig(dtype=bad), "score.dtype"),
                      (lambda: DistillConfig(precision=bad), "distill.precision"),
                      (lambda: EvalConfig(teacher_dtype=bad), "eval.teacher_dtype"), (lambda: resolve_dtype(bad, "--dtype"), "--dtype")):
        with pytest.raises(UserError, match=f"{key} must be one of auto, float32 \\(fp32\\), bfloat16 \\(bf16\\)"):
            make()
