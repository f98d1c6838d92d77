"""Teacher training on a tiny random Llama: exact resume, kill -9 resume, 2-process accelerate, QLoRA, bad input;
the trainer's parts (budget options, checkpoint clean-up, the best checkpoint, an already trained run)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, TEST_RUNTIME, assert_user_error
from tests.teacher_testkit import ONE_THREAD, env, one_thread, write_pairs_table, write_recipe


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.builders.tiny_teacher import build_tiny_base

    root = tmp_path_factory.mktemp("tiny-train")
    base = build_tiny_base(root / "base", seed=0)
    data = write_pairs_table(root / "pairs.csv")
    return {"root": root, "base": base, "data": data, "recipe": write_recipe(root / "recipe.yaml", base, data)}


def _weights(d):
    return {**load_file(str(d / "head.safetensors")), **load_file(str(d / "adapter" / "adapter_model.safetensors"))}


@pytest.mark.slow
def test_resume_after_a_checkpoint_equals_uninterrupted_run(tiny, tmp_path):
    from reldistill.recipe import load_recipe
    from reldistill.teacher.train import train_teacher

    with one_thread():
        full = train_teacher(load_recipe(tiny["recipe"]), tmp_path / "full", progress=False, runtime=TEST_RUNTIME)
        part = train_teacher(load_recipe(tiny["recipe"]), tmp_path / "part", max_steps=5, progress=False, runtime=TEST_RUNTIME)
        m_part = json.loads((part / "manifest.json").read_text())
        assert m_part["steps"] == 5 and not m_part["finished"]
        assert (part / "checkpoints" / "step-0000005").is_dir()
        resumed = train_teacher(load_recipe(tiny["recipe"]), tmp_path / "part", progress=False, runtime=TEST_RUNTIME)
    m_full = json.loads((full / "manifest.json").read_text())
    m_res = json.loads((resumed / "manifest.json").read_text())
    assert m_res["steps"] == m_full["steps"] == m_full["total_steps"] == 14 and m_res["finished"]
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys() and any("lora_B" in k for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert any(h["step"] == 0 for h in m_full["history"]), "the untrained baseline is evaluated"
    assert m_full["dev_metrics"]["mse"] is not None
    # the trained artifact loads and scores
    from reldistill.teacher import Teacher

    s = Teacher.load(resumed, dtype="float32", runtime=TEST_RUNTIME).score_pairs(["shoes red"], ["shoes mug item 1"])
    assert 0 <= s[0] <= 1


def _wait_for(pred, timeout, proc):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill9_training_then_rerun_resumes_from_last_checkpoint(tiny, tmp_path):
    recipe = write_recipe(tmp_path / "long.yaml", tiny["base"], tiny["data"], epochs=20, keep_checkpoints=2,
                          checkpoint_fraction=0.5)
    out = tmp_path / "teacher"
    cmd = [sys.executable, "-m", "reldistill.workflow.cli", "teacher", "train", "--config", str(recipe), "--output", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckdir = out / "checkpoints"

    def steps():
        return sorted(int(p.name.split("-")[1]) for p in ckdir.glob("step-*") if p.is_dir()) if ckdir.is_dir() else []

    try:
        assert _wait_for(lambda: len(steps()) >= 1 and steps()[-1] >= 8, 180, proc), "no checkpoint appeared"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not (out / "manifest.json").exists()  # killed runs never look finished
    last = steps()[-1]
    rerun = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming from step-{last:07d}" in rerun.stderr, rerun.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"] == m["total_steps"] == 140 and m["finished"]


# 2-process training under `accelerate launch` (gloo): tests/test_production.py::test_production_dryrun_on_a_tiny_config
# (processes, steps, the 20 % checkpoint, kill -9 + resume equal to the uninterrupted run).


def test_qlora_4bit_training_step_on_cpu(tmp_path):
    from bitsandbytes.nn import Linear4bit

    from tests.builders.tiny_teacher import build_tiny_base

    from reldistill.teacher.inputs import PairEncoder
    from reldistill.teacher.teacher import build_cross_encoder
    from tests.builders.tiny_teacher import tiny_teacher_config

    cfg = tiny_teacher_config(load_in_4bit=True)
    with one_thread():
        torch.manual_seed(0)
        base = build_tiny_base(tmp_path / "base64", hidden_size=64)  # NF4 blocks are 64 values wide
        model, tok, _ = build_cross_encoder(cfg, torch.float32, base=str(base))
        assert any(isinstance(m, Linear4bit) for m in model.modules())
        enc = PairEncoder(tok, cfg.template, cfg.max_length)
        batch = enc.collate(enc.encode(["red shoes", "tea"], ["nike shoes red", "usb cable"]))
        params = [p for p in model.parameters() if p.requires_grad]
        lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
        before = [p.detach().clone() for p in lora_b]
        opt = torch.optim.AdamW(params, lr=1e-2)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**batch), torch.tensor([1.0, 0.0]))
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, lora_b)), "the LoRA weights on the 4-bit base moved"


@pytest.mark.slow
def test_train_bad_inputs(cli, tiny, tmp_path):
    assert_user_error(cli("teacher", "train", "--config", tmp_path / "none.yaml", env=ONE_THREAD), "does not exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: fast\n")
    assert_user_error(cli("teacher", "train", "--config", bad, env=ONE_THREAD), "train.lr")
    offline = write_recipe(tmp_path / "off.yaml", "meta-llama/Not-A-Real-Model-1B", tiny["data"])
    assert_user_error(cli("teacher", "train", "--config", offline, "--output", tmp_path / "o", env=ONE_THREAD),
                      "not available offline")
    assert not (tmp_path / "o" / "manifest.json").exists()


@pytest.mark.slow
def test_truncated_checkpoint_is_a_user_error(tiny, tmp_path, cli):
    from reldistill.recipe import load_recipe
    from reldistill.teacher.train import train_teacher

    with one_thread():
        out = train_teacher(load_recipe(tiny["recipe"]), tmp_path / "t", max_steps=2, progress=False, runtime=TEST_RUNTIME)
    ck = sorted((out / "checkpoints").glob("step-*"))[-1]
    w = ck / "trainable.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    proc = cli("teacher", "train", "--config", tiny["recipe"], "--output", out, env=ONE_THREAD)
    assert_user_error(proc, "truncated or corrupted", ck.name, "--no-resume")
    shutil.rmtree(ck)  # as the message advises; now the previous checkpoint lacks its optimizer state
    ck = sorted((out / "checkpoints").glob("step-*"))[-1]
    (ck / "optimizer.pt").unlink()
    assert_user_error(cli("teacher", "train", "--config", tiny["recipe"], "--output", out, env=ONE_THREAD), "missing optimizer.pt")
    assert (out / "manifest.json").exists()  # the previous artifact is kept


def test_changed_recipe_refuses_to_resume(tiny, tmp_path):
    from reldistill.errors import UserError
    from reldistill.recipe import load_recipe
    from reldistill.teacher.train import train_teacher

    with one_thread():
        out = train_teacher(load_recipe(tiny["recipe"]), tmp_path / "t", max_steps=1, progress=False, runtime=TEST_RUNTIME)
        other = write_recipe(tmp_path / "other.yaml", tiny["base"], tiny["data"], lr=5e-4)
        with pytest.raises(UserError, match="different recipe"):
            train_teacher(load_recipe(other), out, progress=False, runtime=TEST_RUNTIME)
        train_teacher(load_recipe(other), out, resume=False, max_steps=1, progress=False, runtime=TEST_RUNTIME)  # --no-resume starts over


def test_budget_options_override_the_recipe_and_are_checked(tiny):
    from reldistill.errors import UserError
    from reldistill.recipe import load_recipe
    from reldistill.teacher.train import budgeted

    r = load_recipe(tiny["recipe"])
    assert budgeted(r, None, None).train == r.train
    b = budgeted(r, 3, 1.5).train
    assert (b.max_steps, b.max_minutes, b.lr) == (3, 1.5, r.train.lr)
    with pytest.raises(UserError, match="--max-steps"):
        budgeted(r, -1, None)
    with pytest.raises(UserError, match="--max-minutes"):
        budgeted(r, None, 0)


def test_checkpoint_clean_up_keeps_the_last_ones_and_the_best(tmp_path):
    from reldistill.teacher.train import checkpoint_path, list_checkpoints, prune_checkpoints

    for step in (12, 0, 2, 10, 11):
        checkpoint_path(tmp_path, step).mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-0000013.tmp").mkdir()  # an unfinished write is not a checkpoint

    def steps():
        return [int(p.name.split("-")[1]) for p in list_checkpoints(tmp_path)]

    assert steps() == [0, 2, 10, 11, 12]
    prune_checkpoints(tmp_path, 2, {"step": 2, "metric": "mse", "value": 0.1})
    assert steps() == [2, 11, 12]
    prune_checkpoints(tmp_path, 0, None)  # at least one is kept
    assert steps() == [12]


def test_the_best_checkpoint_follows_the_select_metric():
    from reldistill.teacher.train import update_best

    best = update_best(None, 1, "mse", {"mse": 0.3, "ndcg@10": 0.5})
    assert best == {"step": 1, "metric": "mse", "value": 0.3}
    assert update_best(best, 2, "mse", {"mse": 0.4}) is best  # worse
    assert update_best(best, 3, "mse", {}) is best  # not evaluated
    assert update_best(best, 4, "mse", {"mse": 0.2})["step"] == 4
    assert update_best(best, 5, "ndcg@10", {"ndcg@10": 0.1})["step"] == 5  # a best by another metric is replaced
    assert update_best({"step": 5, "metric": "ndcg@10", "value": 0.4}, 6, "ndcg@10", {"ndcg@10": 0.3})["step"] == 5


def test_a_finished_or_spent_run_is_already_trained(tmp_path):
    from types import SimpleNamespace

    from reldistill.teacher.train import Launch, already_trained

    state = {"step": 5, "total_steps": 14, "elapsed_s": 90.0}
    start = Launch(SimpleNamespace(is_main_process=False), torch.float32, 1, {}, tmp_path / "step-0000005", (state, {}, {}))

    def done(max_steps=None, max_minutes=None):
        return already_trained(start, tmp_path, SimpleNamespace(max_steps=max_steps, max_minutes=max_minutes))

    assert not done(max_steps=5)  # no artifact yet: the run continues
    (tmp_path / "manifest.json").write_text("{}")
    assert not done() and not done(max_steps=6) and not done(max_minutes=2)
    assert done(max_steps=5) and done(max_minutes=1.5)
    assert not already_trained(Launch(start.accelerator, torch.float32, 1, {}), tmp_path, SimpleNamespace(max_steps=0, max_minutes=None))
    state["schedule_steps"] = 5  # its LR schedule was fitted to the budget and ended at this step
    assert done() and done(max_minutes=2)


def test_steps_in_budget_counts_steps_and_the_dev_evaluations():
    from reldistill.teacher.train import steps_in_budget

    assert steps_in_budget(0, 100, 1.0, 10.0, 0.0, 50) == 10
    assert steps_in_budget(3, 8, 0.1, 1e6, 0.0, 5) == 8  # never past the plan
    # 2 s per evaluation: one at the end, one at every 5th step — 14 steps cost 14 + 2 x 2 = 18 s of 20
    assert steps_in_budget(0, 100, 1.0, 20.0, 2.0, 5) == 14
    assert steps_in_budget(7, 100, 1.0, 1.0, 2.0, 5) == 7  # not even the final evaluation fits: no more steps


def test_a_time_budget_fits_the_lr_schedule_to_the_steps_that_fit(tiny, tmp_path, monkeypatch):
    import reldistill.teacher.train as tt
    from reldistill.recipe import load_recipe

    seen = {}

    def three_more(step, stop_at, per_step_s, left_s, eval_s, ckpt_every):
        seen.update(step=step, stop_at=stop_at, per_step_s=per_step_s, left_s=left_s, eval_s=eval_s)
        return step + 3

    monkeypatch.setattr(tt, "steps_in_budget", three_more)
    with one_thread():
        out = tt.train_teacher(load_recipe(tiny["recipe"]), tmp_path / "t", max_minutes=30, progress=False, runtime=TEST_RUNTIME)
    assert seen["step"] == tt.FIT_AFTER and seen["stop_at"] == 14
    assert seen["per_step_s"] > 0 and 0 < seen["left_s"] < 30 * 60 and seen["eval_s"] > 0  # the untrained dev eval was timed
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"] == tt.FIT_AFTER + 3
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["steps"], r["of_planned"]) for r in log if r["event"] == "schedule"] == [(tt.FIT_AFTER, tt.FIT_AFTER + 3, 14)]
    lrs = [r["lr"] for r in log if r["event"] == "train"]
    assert len(lrs) == tt.FIT_AFTER + 3 and lrs[-1] == pytest.approx(0.0, abs=1e-12) and min(lrs[:-1]) > 0  # the schedule ends at the fitted step
    state = json.loads((out / "checkpoints" / f"step-{tt.FIT_AFTER + 3:07d}" / "state.json").read_text())
    assert state["schedule_steps"] == tt.FIT_AFTER + 3
    with one_thread():  # a rerun finds it finished (the fitted schedule is its length), not 6 steps short
        again = tt.train_teacher(load_recipe(tiny["recipe"]), tmp_path / "t", max_minutes=30, progress=False, runtime=TEST_RUNTIME)
    assert json.loads((again / "manifest.json").read_text())["steps"] == tt.FIT_AFTER + 3


def test_the_schedule_is_refitted_on_the_steady_pace_after_the_first_steps(tiny, tmp_path, monkeypatch):
    """The first steps run slow (new shapes): the fit at FIT_AFTER is redone at REFIT_AFTER on the steps between."""
    import reldistill.teacher.train as tt
    from reldistill.recipe import load_recipe

    calls = []

    def budget(step, stop_at, per_step_s, left_s, eval_s, ckpt_every):
        calls.append((step, stop_at, per_step_s))
        return step + 5 if len(calls) == 1 else stop_at  # first: 5 more steps fit; refitted: the whole plan

    monkeypatch.setattr(tt, "steps_in_budget", budget)
    monkeypatch.setattr(tt, "REFIT_AFTER", 8)
    recipe = write_recipe(tmp_path / "r.yaml", tiny["base"], tiny["data"], checkpoint_fraction=1.0)  # checkpoints at 7 and 14 only
    with one_thread():
        out = tt.train_teacher(load_recipe(recipe), tmp_path / "t", max_minutes=30, progress=False, runtime=TEST_RUNTIME)
    assert [(c[0], c[1]) for c in calls] == [(tt.FIT_AFTER, 14), (8, 14)]  # both fits see the plan's end, not the first fit's
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["steps"]) for r in log if r["event"] == "schedule"] == [(tt.FIT_AFTER, tt.FIT_AFTER + 5), (8, 14)]
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"] == 14
    lrs = [r["lr"] for r in log if r["event"] == "train"]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and min(lrs[:-1]) > 0  # the refitted schedule ends at the plan's last step


def test_the_schedule_is_refitted_at_each_checkpoint_when_the_pace_drifts(tiny, tmp_path, monkeypatch):
    """A run's pace drifts after the early fits (measured: 3.05 s/step over steps 6-25, ~4 s/step after): each
    checkpoint refits the schedule on the pace so far, counting the evaluation it is about to run."""
    import reldistill.teacher.train as tt
    from reldistill.recipe import load_recipe

    calls = []

    def budget(step, stop_at, per_step_s, left_s, eval_s, ckpt_every):
        calls.append((step, stop_at, left_s, eval_s))
        return {2: 9, 4: 10, 7: 12}[step]

    monkeypatch.setattr(tt, "steps_in_budget", budget)
    monkeypatch.setattr(tt, "FIT_AFTER", 2)
    monkeypatch.setattr(tt, "REFIT_AFTER", 4)
    monkeypatch.setattr(tt.TeacherTraining, "elapsed", lambda self: 100.0)  # a clock that stands still: left_s differs only by evals due
    recipe = write_recipe(tmp_path / "r.yaml", tiny["base"], tiny["data"], checkpoint_fraction=1.0)  # a checkpoint every 7 steps
    with one_thread():
        out = tt.train_teacher(load_recipe(recipe), tmp_path / "t", max_minutes=30, progress=False, runtime=TEST_RUNTIME)
    assert [(c[0], c[1]) for c in calls] == [(2, 14), (4, 14), (7, 14)]  # the checkpoint at step 7 refits; the last (12) does not
    assert calls[0][2] == calls[1][2] == 30 * 60 - 100.0 and calls[2][3] > 0
    assert calls[2][2] == pytest.approx(calls[1][2] - calls[2][3])  # the refit at step 7 leaves out the evaluation due there
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["steps"]) for r in log if r["event"] == "schedule"] == [(2, 9), (4, 10), (7, 12)]
    assert json.loads((out / "manifest.json").read_text())["steps"] == 12
    lrs = [r["lr"] for r in log if r["event"] == "train"]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and min(lrs[:-1]) > 0  # the refitted schedule ends at the step the budget holds
    state = json.loads((out / "checkpoints" / f"step-{7:07d}" / "state.json").read_text())
    assert state["schedule_steps"] == 12  # the checkpoint at the refit holds the new schedule: a resume keeps it
