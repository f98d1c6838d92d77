"""Bad configuration is one clear sentence, never a silent wrong result (batch sizes, eval split, numbers, sections)."""

from __future__ import annotations

import pytest
import yaml

from reldistill.errors import UserError
from tests.conftest import assert_user_error


def _recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# -- item 6: model selection split ---------------------------------------------------------------------
@pytest.mark.parametrize("split", ["test", "deV", "validation"])
def test_teacher_eval_split_must_be_dev_or_train(split):
    from reldistill.teacher.config import TrainConfig

    with pytest.raises(UserError, match="train.eval_split must be 'dev'"):
        TrainConfig(eval_split=split)
    assert TrainConfig(eval_split="train").eval_split == "train"


# -- item 7: numbers and sections ----------------------------------------------------------------------
CASES = [
    ("train:\n  log_every: 0\n", "train.log_every"),
    ("train:\n  eval_batch_size: 0\n", "train.eval_batch_size"),
    ("train:\n  cpu_threads: four\n", "train.cpu_threads"),
    ("train:\n  epochs: .nan\n", "train.epochs must be a finite number"),
    ("train:\n  lr: .inf\n", "train.lr must be a finite number"),
    ("train:\n  lr: .nan\n", "train.lr must be a finite number"),
    ("data:\n  soft_labels: {E: 2.0, S: 0.5, C: 0.0, I: 0.0}\n", "data.soft_labels.E must be a finite number in [0, 1]"),
    ("data:\n  soft_labels: {E: .nan, S: 0.5, C: 0.0, I: 0.0}\n", "data.soft_labels.E"),
    ("data:\n  gains: {E: 1.0, S: -0.1, C: 0.0, I: 0.0}\n", "data.gains.S"),
    ("data:\n  gains: {E: .inf, S: 0.1, C: 0.0, I: 0.0}\n", "data.gains.E"),
    ("data: some/path\n", "section 'data' must be a mapping of settings"),
    ("train:\n", "section 'train' is empty"),
    ("serv:\n  api_key: 0123456789abcdef\n", "unknown section 'serv' (did you mean 'serve'?)"),
]


@pytest.mark.parametrize("text,needle", CASES)
def test_teacher_recipe_errors_are_one_sentence(tmp_path, text, needle):
    from reldistill.teacher.config import load_recipe

    path = _recipe(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text,needle", [
    ("distill:\n  epochs: .nan\n", "distill.epochs must be a finite number"),
    ("distill:\n  lr: .nan\n", "distill.lr"),
    ("distill:\n  score_scale: .inf\n", "distill.score_scale"),
    ("distill: 3\n", "section 'distill' must be a mapping"),
])
def test_distill_recipe_errors_are_one_sentence(tmp_path, text, needle):
    from reldistill.distill.config import load_distill_config

    with pytest.raises(UserError, match=None) as err:
        load_distill_config(_recipe(tmp_path, text))
    assert needle in str(err.value)


def test_unknown_section_names_the_file_on_the_command_line(cli, tmp_path):
    path = _recipe(tmp_path, yaml.safe_dump({"index": {"kind": "flat"}, "sevre": {"api_key": "0123456789abcdef"}}))
    assert_user_error(cli("index", "build", "--run", tmp_path / "run", "--config", path), str(path), "'sevre'", "'serve'")
    assert not (tmp_path / "run").exists()


def test_every_shipped_recipe_still_loads():
    from pathlib import Path

    from reldistill.config import load_yaml
    from reldistill.distill.config import load_distill_config
    from reldistill.teacher.config import load_recipe

    recipes = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))
    assert recipes
    for path in recipes:
        load_yaml(path)
        load_recipe(path)
        load_distill_config(path)
