"""Bad configuration is one clear sentence, never a silent wrong result (batch sizes, eval split, numbers, sections)."""

from __future__ import annotations

from pathlib import Path

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
    from reldistill.recipe.teacher import TrainConfig

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
    from reldistill.recipe import load_recipe

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
    from reldistill.recipe import load_recipe

    with pytest.raises(UserError, match=None) as err:
        load_recipe(_recipe(tmp_path, text))
    assert needle in str(err.value)


@pytest.mark.slow
def test_unknown_section_names_the_file_on_the_command_line(cli, tmp_path):
    path = _recipe(tmp_path, yaml.safe_dump({"index": {"kind": "flat"}, "sevre": {"api_key": "0123456789abcdef"}}))
    assert_user_error(cli("index", "build", "--run", tmp_path / "run", "--config", path), str(path), "'sevre'", "'serve'")
    assert not (tmp_path / "run").exists()


# -- issue 13 item 3: one recipe, read once ----------------------------------------------------------------
SHIPPED = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_holds_what_its_file_says(path):
    from reldistill.recipe import OPTIONAL, SECTIONS, load_recipe
    from reldistill.precision import parse_dtype

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    recipe = load_recipe(path)
    dump = recipe.to_dict()
    assert set(dump) == set(SECTIONS) - (set(OPTIONAL) - set(raw))  # an optional section only when the file has it
    for section, settings in raw.items():
        for key, value in settings.items():
            if key in ("precision", "dtype"):  # spelt fp32 / bf16 in a file, held as float32 / bfloat16
                value = parse_dtype(value)
            if key == "model_config":  # resolved against the recipe's folder when not found from the cwd
                assert Path(dump[section][key]).resolve() == (path.parents[1] / value).resolve()
                continue
            assert dump[section][key] == value, f"{path.name}: {section}.{key}"


@pytest.mark.parametrize("path", [None, *SHIPPED], ids=lambda p: "defaults" if p is None else p.name)
def test_a_recipe_written_back_reads_to_the_same_recipe(tmp_path, path):
    from reldistill.recipe import load_recipe

    recipe = load_recipe(path)
    again = load_recipe(_recipe(tmp_path, yaml.safe_dump(recipe.to_dict(), allow_unicode=True)))
    assert again == recipe
    assert again.to_dict() == recipe.to_dict()


def test_an_optional_section_is_none_unless_the_file_has_it(tmp_path):
    from reldistill.recipe import load_recipe
    from reldistill.recipe.demo import DemoConfig

    assert load_recipe(None).demo is None and load_recipe(_recipe(tmp_path, "data:\n  seed: 1\n")).demo is None
    recipe = load_recipe(_recipe(tmp_path, "demo:\n  target_minutes: 9\n"))
    assert recipe.demo == DemoConfig(target_minutes=9.0)
    assert load_recipe(_recipe(tmp_path, yaml.safe_dump(recipe.to_dict()))) == recipe
    with pytest.raises(UserError, match="demo.target_minutes must be a positive number"):
        load_recipe(_recipe(tmp_path, "demo:\n  target_minutes: -1\n"))


def test_an_unknown_section_names_the_file_and_the_section(tmp_path):
    from reldistill.recipe import load_recipe

    path = _recipe(tmp_path, "data:\n  seed: 1\nstudnet:\n  backend: torch\n")
    with pytest.raises(UserError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert str(path) in msg and "unknown section 'studnet'" in msg and "did you mean 'student'?" in msg
    assert "\n" not in msg


def _sections():
    from reldistill.recipe import SECTIONS

    return SECTIONS


@pytest.mark.parametrize("section", _sections())
def test_an_unknown_key_in_any_section_names_the_file_section_and_key(tmp_path, section):
    from reldistill.recipe import load_recipe

    path = _recipe(tmp_path, f"{section}:\n  no_such_setting: 1\n")
    with pytest.raises(UserError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert f"{path}: {section} has unknown key(s) no_such_setting" in msg and "\n" not in msg


def test_a_range_error_names_the_file_too(tmp_path):
    from reldistill.recipe import load_recipe

    path = _recipe(tmp_path, "index:\n  kind: lsh\n")
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert str(path) in str(err.value) and "index.kind must be one of flat, hnsw, ivfpq" in str(err.value)


def test_a_moved_setting_names_where_it_lives_now(tmp_path):
    from reldistill.recipe import load_recipe

    with pytest.raises(UserError, match=r"eval\.rrf_k is gone .* search\.rrf_k"):
        load_recipe(_recipe(tmp_path, "eval:\n  rrf_k: 60\n"))


# CLI options that mirror a recipe field: (command path, option name, section class name, field)
MIRRORED = [
    (("teacher", "train"), "max_steps", "TrainConfig", "max_steps"),
    (("teacher", "score"), "batch_size", "ScoreConfig", "batch_size"),
    (("teacher", "score"), "dtype", "ScoreConfig", "dtype"),
    (("distill", "label"), "dtype", "ScoreConfig", "dtype"),
    (("distill", "train"), "loss", "DistillConfig", "loss"),
    (("distill", "train"), "epochs", "DistillConfig", "epochs"),
    (("distill", "mine"), "queries", "DistillConfig", "queries_path"),
    (("index", "build"), "kind", "IndexConfig", "kind"),
    (("index", "build"), "data", "DataConfig", "path"),
    (("search",), "rerank_k", "SearchConfig", "rerank_k"),
    (("serve",), "port", "ServeConfig", "port"),
    (("eval",), "split", "EvalConfig", "split"),
    (("bench",), "student_docs", "BenchConfig", "student_docs"),
]


@pytest.mark.parametrize("command,option,cls_name,field", MIRRORED, ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v))
def test_cli_options_take_help_from_the_recipe_field_and_no_default_of_their_own(command, option, cls_name, field):
    import dataclasses

    import typer.main

    import reldistill.recipe as recipe_mod
    from reldistill.recipe import option_help
    from reldistill.workflow.cli import app

    cls = next(c for c in recipe_mod.SECTION_OF if c.__name__ == cls_name)
    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    param = next(p for p in cmd.params if p.name == option)
    help_text = next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == field)
    assert param.help == option_help(cls, field) and help_text.rstrip(".") in param.help
    assert param.default is None  # the recipe (or the field default) decides, not the option


def test_every_shipped_recipe_still_loads():
    from reldistill.recipe import load_recipe

    assert SHIPPED
    for path in SHIPPED:
        assert load_recipe(path).path == path
