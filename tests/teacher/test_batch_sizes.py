"""A negative or zero batch size (CLI flag or recipe) is one clear error, never 0.5 for every pair."""

from __future__ import annotations

import numpy as np
import pytest

from reldistill.errors import UserError
from tests.conftest import assert_user_error
from tests.teacher_testkit import one_thread
from tests.conftest import TEST_RUNTIME


def _recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_negative_teacher_batch_size_is_refused_not_scored_as_one_half(tmp_path):
    from reldistill.teacher import Teacher
    from tests.builders.tiny_teacher import build_tiny_teacher

    teacher = Teacher.load(build_tiny_teacher(tmp_path / "t", seed=1), dtype="float32", runtime=TEST_RUNTIME)
    with one_thread():
        probs = teacher.score_pairs(["red shoe", "blue hat"], ["red shoe", "green lamp"], batch_size=1)
        assert not np.allclose(probs, 0.5)
        for bad in (-1, 0):
            with pytest.raises(UserError, match="batch size"):
                teacher.score_pairs(["red shoe", "blue hat"], ["red shoe", "green lamp"], batch_size=bad)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["distill", "label", "--batch-size", "-1"], ["teacher", "eval", "--batch-size", "-1"],
                                  ["teacher", "eval", "--batch-size", "0"]])
def test_cli_batch_size_flags_are_checked_first(cli, tmp_path, args):
    from tests.builders.tiny_teacher import build_tiny_teacher

    run = tmp_path / "run"
    build_tiny_teacher(run / "teacher", seed=1)
    where = ["--run", run] if args[0] == "distill" else ["--teacher", run / "teacher"]
    assert_user_error(cli(*args, *where), "--batch-size", "at least 1")


def test_a_negative_score_batch_size_in_the_recipe_stops_the_demo_before_any_stage(tmp_path):
    from reldistill.workflow.pipeline import Pipeline

    recipe = _recipe(tmp_path, "score:\n  batch_size: -1\n")
    with pytest.raises(UserError, match="score.batch_size"):
        Pipeline(recipe, tmp_path / "run", budget_minutes=3)
    assert not (tmp_path / "run").exists()
