"""`teacher plan`: exact LoRA parameter count of the seed recipe, offline, from the shipped architecture config."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_user_error
from tests.teacher_testkit import ONE_THREAD


@pytest.mark.slow
def test_plan_reports_seed_lora_params_offline(cli):
    proc = cli("teacher", "plan", "--config", "configs/llama-3.2-1b-a100.yaml", "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["lora"]["trainable_parameters"] == 13_631_488  # the seed's figure
    assert plan["backbone"]["parameters"] == 1_235_814_400  # Llama-3.2-1B (tied embeddings)
    assert plan["head"]["parameters"] == 2048 * 1024 + 1024 + 1024 + 1
    assert plan["total_parameters"] == plan["backbone"]["parameters"] + plan["lora"]["trainable_parameters"] + plan["head"]["parameters"]
    mem = plan["training_memory_estimate"]
    assert mem["precision"] == "bf16" and mem["batch_size_per_device"] == 32 and mem["max_length"] == 256
    assert 0 < mem["weights_gib"] < mem["total_gib"] and isinstance(mem["fits"]["A100-80GB"], bool)


def test_plan_memory_responds_to_4bit_and_checkpointing(tmp_path):
    import yaml

    from reldistill.recipe import load_recipe
    from reldistill.teacher.plan import plan_teacher

    raw = yaml.safe_load(open("configs/llama-3.2-1b-a100.yaml"))
    raw["teacher"]["model_config"] = str(__import__("pathlib").Path("configs/llama-3.2-1b/config.json").resolve())
    base = plan_teacher(load_recipe(_dump(tmp_path / "a.yaml", raw)))["training_memory_estimate"]
    raw["teacher"]["load_in_4bit"] = True
    raw["train"]["gradient_checkpointing"] = True
    small = plan_teacher(load_recipe(_dump(tmp_path / "b.yaml", raw)))["training_memory_estimate"]
    assert small["weights_gib"] < base["weights_gib"] / 2
    assert small["activations_gib"] < base["activations_gib"] / 4


def _dump(path, raw):
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_plan_bad_inputs(cli, tmp_path):
    assert_user_error(cli("teacher", "plan", "--config", tmp_path / "missing.yaml"), "does not exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher:\n  lora_rank: 8\n")
    assert_user_error(cli("teacher", "plan", "--config", bad), "unknown key", "lora_rank")
    nocfg = tmp_path / "nocfg.yaml"
    nocfg.write_text("teacher:\n  model_config: nowhere/config.json\n")
    assert_user_error(cli("teacher", "plan", "--config", nocfg), "model_config", "does not exist")
