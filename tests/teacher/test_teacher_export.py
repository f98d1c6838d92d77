"""`reldistill teacher export`: the merged teacher loads with plain transformers (no reldistill import) and
scores like `Teacher.score_pairs` (fp32, within 1e-4); the mlp head exports to ONNX that ONNX Runtime scores
without reldistill (within 1e-3); a teacher blended with a bi-encoder prior is refused with one sentence."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import assert_user_error
from tests.conftest import TEST_RUNTIME

pytestmark = pytest.mark.slow  # every test exports a teacher through the CLI

PAIRS = [("running shoes", "red running shoes for men size 10 black"), ("usb c charger", "fast charging cable usb c"),
         ("dog food", "grain free dog food small breed"), ("water bottle", "stainless steel water bottle 32 oz"),
         ("tea", "organic green tea bags 100 count, a very long product text " * 3), ("phone case", "clear case")]

# Runs in a fresh interpreter that never imports reldistill: the export's own README recipe, as a user runs it.
PLAIN = r"""
import json, re, sys
path, pairs = sys.argv[1], json.loads(sys.argv[2])
card = open(path + "/README.md", encoding="utf-8").read()
env = {"PATH": path}
exec(re.search(r"```python\n(.*?)```", card, re.S).group(1), env)
logits, prob = env["score"](pairs)
print(json.dumps({"logits": logits.tolist(), "prob": prob.tolist(), "padding_side": env["tok"].padding_side,
                  "class": type(env["model"]).__name__, "reldistill_loaded": any(m.startswith("reldistill") for m in sys.modules)}))
"""


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_linear_head_export_loads_with_plain_transformers(tmp_path, cli, padding_side):
    from reldistill.teacher.teacher import Teacher
    from tests.builders.tiny_teacher import build_tiny_teacher

    tdir = build_tiny_teacher(tmp_path / "teacher", head="linear", padding_side=padding_side)
    proc = cli("teacher", "export", "--teacher", tdir, "--out", tmp_path / "export", timeout=300)
    assert proc.returncode == 0, proc.stderr
    plain = subprocess.run([sys.executable, "-c", PLAIN, str(tmp_path / "export"), json.dumps(PAIRS)],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    got = json.loads(plain.stdout.strip().splitlines()[-1])
    assert got["class"] == "LlamaForSequenceClassification" and not got["reldistill_loaded"]
    assert got["padding_side"] == padding_side
    teacher = Teacher.load(tdir, dtype="fp32", runtime=TEST_RUNTIME)
    q, t = zip(*PAIRS)
    want_logit, want_prob = teacher.score_logits(q, t), teacher.score_pairs(q, t)
    bias = json.loads((tmp_path / "export" / "config.json").read_text())["reldistill"]["score_bias"]
    assert abs(bias) > 1e-3  # the tiny teacher's head bias is random: the bias path is exercised
    np.testing.assert_allclose(np.array(got["logits"]) + bias, want_logit, atol=1e-4)
    np.testing.assert_allclose(got["prob"], want_prob, atol=1e-4)
    assert list(np.argsort(got["logits"])) == list(np.argsort(want_logit))  # same ranking without the bias


def test_mlp_head_exports_to_onnx_that_onnxruntime_scores_without_reldistill(tmp_path, cli):
    """The seed's mlp head: `teacher export` (format auto → onnx) → model.onnx + model.onnx.data + tokenizer.json;
    the export's own README recipe (onnxruntime + tokenizers only) scores as `Teacher.score_pairs`."""
    from reldistill.teacher.teacher import Teacher
    from tests.builders.tiny_teacher import build_tiny_teacher

    tdir = build_tiny_teacher(tmp_path / "teacher")  # the seed recipe's mlp head
    assert_user_error(cli("teacher", "export", "--teacher", tdir, "--out", tmp_path / "hf", "--format", "transformers",
                          timeout=300), "teacher.head 'mlp' cannot be exported", "only the linear and lm heads")
    assert not (tmp_path / "hf").exists()
    proc = cli("teacher", "export", "--teacher", tdir, "--out", tmp_path / "export", timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "export"
    assert {"model.onnx", "model.onnx.data", "tokenizer.json", "config.json", "README.md"} <= {p.name for p in out.iterdir()}
    plain = subprocess.run([sys.executable, "-c", ORT, str(out), json.dumps(PAIRS)], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    got = json.loads(plain.stdout.strip().splitlines()[-1])
    assert got["imported"] == [], got["imported"]  # neither reldistill nor torch nor transformers
    teacher = Teacher.load(tdir, dtype="fp32", int8="off", runtime=TEST_RUNTIME)
    q, t = zip(*PAIRS)
    np.testing.assert_allclose(got["prob"], teacher.score_pairs(q, t), atol=1e-3)
    np.testing.assert_allclose(got["logits"], teacher.score_logits(q, t), atol=1e-3)


# The ONNX export's README recipe in a fresh interpreter; reports which heavy libraries it imported.
ORT = r"""
import json, re, sys
path, pairs = sys.argv[1], json.loads(sys.argv[2])
env = {"PATH": path}
exec(re.search(r"```python\n(.*?)```", open(path + "/README.md", encoding="utf-8").read(), re.S).group(1), env)
logits, prob = env["score"](pairs)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"reldistill", "torch", "transformers"})
print(json.dumps({"logits": logits.tolist(), "prob": prob.tolist(), "imported": heavy}))
"""


def test_export_refuses_a_prior_blend_and_onnx_in_bf16(tmp_path, cli):
    from tests.builders.tiny_teacher import build_tiny_teacher

    tdir = build_tiny_teacher(tmp_path / "teacher", head="linear")
    manifest = json.loads((tdir / "manifest.json").read_text())
    prior = {"student": "all-minilm-l6-v2", "weight": 0.5, "llm_mean": 0.0, "llm_std": 1.0, "cos_mean": 0.0, "cos_std": 1.0}
    (tdir / "manifest.json").write_text(json.dumps({**manifest, "prior": prior}))
    assert_user_error(cli("teacher", "export", "--teacher", tdir, "--out", tmp_path / "o"),
                      "blends its LLM score with a bi-encoder prior", "teacher.prior_student")
    assert_user_error(cli("teacher", "export", "--teacher", tdir, "--out", tmp_path / "o", "--format", "onnx"),
                      "blends its LLM score with a bi-encoder prior", "teacher.prior_student")  # the ONNX graph holds the LLM alone too
    assert_user_error(cli("teacher", "export", "--teacher", tdir, "--out", tmp_path / "o", "--format", "onnx", "--dtype", "bf16"),
                      "the ONNX export is fp32")
    assert_user_error(cli("teacher", "export", "--teacher", tdir, "--out", tmp_path / "o", "--format", "tflite"), "--format must be")
    assert not (tmp_path / "o").exists()


def test_a_prior_kept_at_llm_weight_one_exports_and_a_blend_is_refused_in_one_sentence():
    """Training keeps the LLM alone when dev says the blend does not rank better (weight 1): that teacher scores as its
    LLM, so it exports; any weight below 1 is refused before a model loads, with one sentence naming the way out."""
    from reldistill.errors import UserError
    from reldistill.teacher.export import check_prior

    stats = {"student": "all-minilm-l6-v2", "llm_mean": 0.0, "llm_std": 1.0, "cos_mean": 0.0, "cos_std": 1.0}
    check_prior({})
    check_prior({"prior": {**stats, "weight": 1.0}})
    with pytest.raises(UserError) as e:
        check_prior({"prior": {**stats, "weight": 0.7}})
    msg = str(e.value)
    assert "LLM weight 0.7" in msg and "teacher.prior_student" in msg and msg.count(". ") == 0 and "\n" not in msg


def test_lm_head_exports_as_one_yes_minus_no_row(tmp_path, cli):
    """``head: lm`` → ``score.weight`` = W[yes] − W[no] of the (tied) LM head, scores as the teacher's."""
    from reldistill.teacher.teacher import Teacher
    from tests.builders.tiny_teacher import build_tiny_teacher

    tdir = build_tiny_teacher(tmp_path / "teacher", head="lm", answer_tokens=["Y", "N"], random_head=False)
    proc = cli("teacher", "export", "--teacher", tdir, "--out", tmp_path / "export", timeout=300)
    assert proc.returncode == 0, proc.stderr
    plain = subprocess.run([sys.executable, "-c", PLAIN + ROW, str(tmp_path / "export"), json.dumps(PAIRS)],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.strip().splitlines()
    got, row = json.loads(lines[-2]), json.loads(lines[-1])
    info = json.loads((tmp_path / "export" / "config.json").read_text())["reldistill"]
    assert info["head"] == "lm" and info["answer_tokens"] == ["Y", "N"]
    assert row["max_abs_diff"] < 1e-6  # the score row is exactly embed[Y] − embed[N]
    teacher = Teacher.load(tdir, dtype="fp32", runtime=TEST_RUNTIME)
    q, t = zip(*PAIRS)
    np.testing.assert_allclose(got["prob"], teacher.score_pairs(q, t), atol=1e-4)


ROW = r"""
model, tok = env["model"], env["tok"]
ids = [tok(x, add_special_tokens=False)["input_ids"][0] for x in model.config.reldistill["answer_tokens"]]
emb = model.get_input_embeddings().weight
print(json.dumps({"max_abs_diff": float((model.score.weight[0] - (emb[ids[0]] - emb[ids[1]])).abs().max())}))
"""
