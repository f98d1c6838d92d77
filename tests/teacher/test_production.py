"""The production path: the dry run's code on a tiny config (2 gloo processes, kill -9 resume, sharded scoring,
ONNX export), the plan's CPU and 4-bit figures, the LM-head production variant, and QLoRA's refusal where
bitsandbytes has no 4-bit kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.teacher_testkit import env

SEED = REPO / "configs/llama-3.2-1b-a100.yaml"


def _recipe(path: Path, src: Path = SEED, **teacher) -> Path:
    raw = yaml.safe_load(src.read_text())
    raw["teacher"]["model_config"] = str(REPO / raw["teacher"]["model_config"])
    raw["teacher"].update(teacher)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_plan_on_cpu_counts_the_load_and_shows_4bit_beside_bf16(tmp_path):
    from reldistill.recipe import load_recipe
    from reldistill.teacher.plan import plan_teacher

    recipe = load_recipe(_recipe(tmp_path / "seed.yaml"))
    gpu = plan_teacher(recipe)["training_memory_estimate"]
    cpu = plan_teacher(recipe, device="cpu")["training_memory_estimate"]
    assert cpu["device"] == "cpu" and cpu["fits"] == {} and cpu["reserve_gib"] < gpu["reserve_gib"]
    assert cpu["checkpoint_while_loading_gib"] == pytest.approx(1_235_814_400 * 2 / 1024**3, abs=1e-3)  # bf16 on the hub
    for est in (gpu, cpu):
        by = est["by_precision_gib"]
        assert by["4bit_nf4"] < by["bf16"] and by["bf16"] == est["total_gib"]  # the seed trains in bf16


def test_lm_production_variant_is_the_seed_with_the_lm_head(tmp_path):
    from reldistill.recipe import load_recipe
    from reldistill.teacher.plan import plan_teacher

    seed, lm = (load_recipe(_recipe(tmp_path / f"{n}.yaml", REPO / f"configs/{n}.yaml"))
                for n in ("llama-3.2-1b-a100", "llama-3.2-1b-lm-a100"))
    assert lm.teacher.head == "lm" and lm.teacher.answer_tokens == [" yes", " no"]
    assert lm.train == seed.train and lm.data == seed.data and lm.score == seed.score
    p = plan_teacher(lm)
    assert p["lora"]["trainable_parameters"] == 13_631_488 and p["head"]["parameters"] == 2048 + 1
    assert p["trainable_parameters"] == 13_631_488 + 1  # the yes−no row is frozen, its bias trains


def test_4bit_is_refused_with_one_sentence_where_bitsandbytes_has_no_kernel(monkeypatch, tmp_path):
    import torch

    from reldistill.errors import UserError
    from reldistill.teacher import backbone
    from tests.builders.tiny_teacher import build_tiny_base, tiny_teacher_config

    assert backbone.has_4bit_kernel("cpu") == torch._C._dispatch_has_kernel_for_dispatch_key("bitsandbytes::dequantize_4bit", "CPU")
    assert not backbone.has_4bit_kernel("mps")  # no bitsandbytes 4-bit kernel for Apple GPUs here
    monkeypatch.setattr(backbone, "has_4bit_kernel", lambda device: False)
    from reldistill.teacher.teacher import build_cross_encoder

    with pytest.raises(UserError) as e:
        build_cross_encoder(tiny_teacher_config(load_in_4bit=True), torch.float32, base=str(build_tiny_base(tmp_path / "base")))
    msg = str(e.value)
    assert "teacher.load_in_4bit needs a bitsandbytes 4-bit kernel for cpu" in msg and msg.count(". ") == 0


@pytest.mark.slow
def test_production_dryrun_on_a_tiny_config(tmp_path, esci_dir):
    """scripts/production_dryrun.py, every phase, on the seed recipe with a tiny architecture: the checks hold."""
    cfg = tmp_path / "tiny-config.json"
    cfg.write_text(json.dumps({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 600,
                               "tie_word_embeddings": True, "torch_dtype": "bfloat16"}))
    recipe = _recipe(tmp_path / "recipe.yaml", model_config=str(cfg), head_hidden=16, lora_r=4, lora_alpha=8)
    out = tmp_path / "dry.json"
    cmd = [sys.executable, str(REPO / "scripts/production_dryrun.py"), "--config", str(recipe), "--data", str(esci_dir),
           "--work", str(tmp_path / "work"), "--json", str(out), "--doc", str(tmp_path / "production.md"),
           "--max-length", "48", "--score-pairs", "1000", "--parity-pairs", "8"]
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert all(r["checks"].values()), r["checks"]
    every = r["train"]["checkpoint_every"]  # 20 % of the subset's epoch (its train share depends on the dev carve)
    assert r["train"]["processes"] == 2 and every in r["train"]["checkpoints"] and r["resume"]["resumed_from_message"]
    steps = r["resume"]["steps_compared"]  # every step after the kill, re-run from the checkpoint
    assert steps[0] == every + 1 and len(steps) >= 2 and steps == list(range(steps[0], steps[0] + len(steps)))
    assert r["score"]["pairs"] >= 1000
    assert 0.2 < r["train"]["process_baseline_gib"] == r["train"]["plan"]["reserve_gib"]  # the reserve measured here
    assert r["resume"]["killed_processes"] >= 3  # the launcher and both workers (torchrun gives them their own sessions)
    doc = (tmp_path / "production.md").read_text()
    assert "vllm serve" in doc and "--task score" in doc and "text-embeddings-inference" in doc
    assert f"{r['train']['seconds_per_step']} s per step" in doc and "| not run |" not in doc  # every check ran


@pytest.mark.slow
def test_two_process_launch_refuses_a_foreign_output_folder_and_keeps_it(tmp_path, esci_dir):
    """Under `accelerate launch` (2 gloo processes) a folder that is not a teacher is refused with one sentence, once
    (the main process looks; the launch ends), and its file is untouched."""
    out = tmp_path / "not-a-teacher"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    recipe = _recipe(tmp_path / "recipe.yaml")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "reldistill.workflow.cli", "teacher", "train",
           "--config", str(recipe), "--output", str(out), "--data", str(esci_dir), "--max-steps", "1"]
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and text.count("refusing to replace it") == 1, text[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
