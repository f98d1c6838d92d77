"""The real demo teacher (configs/demo-cpu.yaml's GGUF offline copy): a couple of training steps on the ESCI sample, then scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from tests.conftest import TEST_RUNTIME

pytestmark = pytest.mark.slow


def test_demo_teacher_trains_and_scores(esci_dir, tmp_path):
    from reldistill.models import resolve_model
    from reldistill.recipe import load_recipe
    from reldistill.teacher import Teacher
    from reldistill.teacher.rerank import TeacherReranker
    from reldistill.teacher.train import train_teacher

    raw = yaml.safe_load(open("configs/demo-cpu.yaml"))
    recipe = {"data": {**raw["data"], "path": str(esci_dir)}, "teacher": raw["teacher"],
              "train": {**raw["train"], "batch_size": 2, "eval_max_queries": 1, "eval_at_start": False, "cache_prefix": False,
                                      "max_minutes": None}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = train_teacher(load_recipe(path), tmp_path / "teacher", max_steps=2, progress=False, runtime=TEST_RUNTIME)
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"] == 2 and m["base_model"] == resolve_model(raw["teacher"]["model"]).hub_id
    assert m["score_head"]["kind"] == raw["teacher"]["head"] and m["dev_queries"] == 1
    assert m["dev_metrics"]["mse"] is not None and m["precision"] in ("bf16", "fp32")
    teacher = Teacher.load(out, runtime=TEST_RUNTIME)
    assert teacher.tokenizer.pad_token_id != teacher.tokenizer.eos_token_id
    s = teacher.score_pairs(["wireless headphones", "wireless headphones", "dog food"],
                            ["Sony noise cancelling wireless headphones | Sony | Black", "garden hose 50 ft", "grain free dry dog food"])
    assert s.shape == (3,) and np.all((s > 0) & (s < 1))
    res = TeacherReranker(teacher).rerank("dog food", [("a", "garden hose"), ("b", "grain free dry dog food")])
    assert [r.rank for r in res] == [1, 2]
