"""scripts/teacher_peak_ceiling.py on a tiny teacher and the real ESCI sample: its figures hang together."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import load_script
from reldistill.settings import PREFIX_KV_ENV
from tests.teacher_testkit import tiny_teacher_dir

pytestmark = pytest.mark.slow  # every test runs the script on a teacher and the ESCI sample


def test_the_ceiling_is_the_overall_fraction_over_the_matmul_share(tmp_path_factory, capsys, esci_dir):
    teacher = tiny_teacher_dir(tmp_path_factory, "ceiling", seed=5)
    before = os.environ.get(PREFIX_KV_ENV)
    load_script("teacher_peak_ceiling").main([str(teacher), "--dtype", "float32", "--pairs", "12", "--batch-size", "4",
                                              "--data", str(esci_dir)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    out = {k: v for line in lines for k, v in line.items()}
    assert set(out) == {"overall", "time_share", "ceiling", "linear_shapes"}
    assert os.environ.get(PREFIX_KV_ENV) == before  # the full forward was timed; the process's setting is left as it was
    o, share = out["overall"], out["time_share"]["matmul"]
    assert o["pairs"] == 12 and o["tokens"] > 12 and o["gflops"] > 0 and 0 < o["peak_fraction"]
    assert 0 < share < 1 and out["time_share"]["top_ops"]
    assert abs(out["ceiling"]["peak_fraction_if_only_matmuls_took_time"] - o["peak_fraction"] / share) < 0.01
    assert out["linear_shapes"]["gflops"] and all(v > 0 for v in out["linear_shapes"]["gflops"].values())


def test_the_production_shape_runs_on_random_weights(capsys, esci_dir):
    mod = load_script("teacher_peak_ceiling")
    mod.LLAMA_3_2_1B = {**mod.LLAMA_3_2_1B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512}  # its shape, shrunk
    mod.main(["llama-3.2-1b", "--dtype", "float32", "--pairs", "8", "--batch-size", "4", "--tokens-per-pair", "20",
              "--data", str(esci_dir)])
    out = {k: v for line in capsys.readouterr().out.splitlines() if line.startswith("{") for k, v in json.loads(line).items()}
    assert out["overall"]["model"] == "llama-3.2-1b" and out["overall"]["tokens"] == 8 * 20
    assert set(out["linear_shapes"]["gflops"]) == {"64->64", "64->32", "64->128", "128->64"}  # q/o, k/v, gate/up, down
