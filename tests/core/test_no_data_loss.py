"""No command destroys what it did not make; a kill mid-swap is repaired; --force deletes nothing up front."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from reldistill.artifacts import atomic_path, write_manifest
from reldistill.run_layout import RunDir
from reldistill.errors import UserError
from tests.conftest import REPO, TEST_RUNTIME, assert_user_error
from tests.distill_testkit import build_tiny_student, write_tiny_esci


def _finished_run(root: Path) -> Path:
    """A run directory as the demo leaves it: stage folders with manifests, a report."""
    for stage, kind in (("teacher", "teacher"), ("scores", "scores"), ("index", "index"), ("student", "student")):
        (root / stage).mkdir(parents=True)
        (root / stage / "weights.bin").write_bytes(b"x" * 10)
        write_manifest(root / stage, kind)
    (root / "report.json").write_text("{}")
    return root


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_directory_swap_never_replaces_another_kind_of_artifact(tmp_path):
    run = _finished_run(tmp_path / "run")
    before = _tree(run)
    with pytest.raises(UserError, match="refusing to replace"):
        with atomic_path(run) as tmp:  # what `distill train --output RUN` did at its end
            tmp.mkdir()
            write_manifest(tmp, "student")
    assert _tree(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp or .old leftovers
    with atomic_path(run / "student") as tmp:  # the same kind is replaced
        tmp.mkdir()
        write_manifest(tmp, "student", v=2)
    assert json.loads((run / "student" / "manifest.json").read_text())["v"] == 2
    with atomic_path(run, force=True) as tmp:  # --force replaces anything
        tmp.mkdir()
        write_manifest(tmp, "student")
    assert not (run / "teacher").exists()


def test_check_replaceable_accepts_absent_empty_and_same_kind(tmp_path):
    from reldistill.artifacts import check_replaceable

    check_replaceable(tmp_path / "absent", "index")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", "index")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(UserError, match="not a reldistill artifact.*--force"):
        check_replaceable(tmp_path / "notes", "index")
    check_replaceable(tmp_path / "notes", "index", force=True)
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_replaceable(tmp_path / "f", "index")


def test_distill_train_output_onto_a_run_is_refused_before_training(tmp_path):
    from reldistill.config import DataConfig
    from reldistill.distill.train import train_human_student
    from reldistill.recipe.distill import DistillConfig

    esci = write_tiny_esci(tmp_path / "esci")
    student = build_tiny_student(tmp_path / "base")
    run = _finished_run(tmp_path / "run")
    before = _tree(run)
    cfg = DistillConfig(student=str(student), batch_size=4, max_steps=1, eval_split="none", max_seq_length=32, precision="float32")
    with pytest.raises(UserError, match=f"{run}.*refusing to replace"):
        train_human_student(run, cfg, DataConfig(path=str(esci)), runtime=TEST_RUNTIME)
    assert _tree(run) == before


def test_distill_train_cli_names_the_run_and_force(cli, tmp_path):
    run = _finished_run(tmp_path / "run")
    before = _tree(run)
    proc = cli("distill", "train", "--run", run, "--output", run, "--human-only")
    assert_user_error(proc, str(run), "refusing to replace", "--force")
    assert _tree(run) == before


def test_index_build_into_a_folder_that_is_not_an_index_is_refused(tmp_path):
    from reldistill.retrieval.build import build_index

    student = build_tiny_student(tmp_path / "base")
    folder = tmp_path / "papers" / "index"  # a user's folder that happens to be called index
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    products = pd.DataFrame({"product_id": [f"P{i}" for i in range(12)], "text": [f"red shoe {i}" for i in range(12)]})
    with pytest.raises(UserError, match="not a reldistill artifact"):
        build_index(folder, student_path=str(student), products=products, runtime=TEST_RUNTIME)
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_checkpoint_clean_up_only_deletes_our_checkpoints(tmp_path):
    from reldistill.distill.train import checkpoint_dir, last_checkpoint

    ckpt = checkpoint_dir(tmp_path / "student")
    ckpt.mkdir()
    (ckpt / "holiday.jpg").write_bytes(b"\xff")
    with pytest.raises(UserError, match="does not hold student checkpoints"):
        last_checkpoint(ckpt, {"config": {}})
    assert (ckpt / "holiday.jpg").is_file()
    (ckpt / "holiday.jpg").unlink()
    (ckpt / "run.json").write_text(json.dumps({"config": {"other": 1}}))
    assert last_checkpoint(ckpt, {"config": {}}) is None and not ckpt.exists()  # ours and stale: removed


KILL_BETWEEN_RENAMES = """
import os, signal, sys
from reldistill.artifacts import atomic_path, write_manifest
real = os.replace
def replace(a, b):
    real(a, b)
    if str(a) == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)  # killed right after the old copy was moved aside
os.replace = replace
with atomic_path(sys.argv[1]) as tmp:
    tmp.mkdir()
    write_manifest(tmp, "index", v=2)
"""


def test_a_kill_between_the_two_renames_is_restored(tmp_path):
    run = tmp_path / "run"
    (run / "index").mkdir(parents=True)
    write_manifest(run / "index", "index", v=1)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILL_BETWEEN_RENAMES), str(run / "index")], cwd=REPO)
    assert proc.returncode == -9
    assert not (run / "index").exists() and any(p.name.startswith(".index.old-") for p in run.iterdir())
    RunDir(run)  # any command opening the run repairs it
    assert json.loads((run / "index" / "manifest.json").read_text())["v"] == 1
    assert sorted(p.name for p in run.iterdir()) == ["index"]


def test_leftovers_of_dead_processes_are_cleaned_when_the_swap_finished(tmp_path):
    from reldistill.artifacts import recover_swaps

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / "index").mkdir()
    (tmp_path / f".index.old-{pid}").mkdir()  # the deletion of the old copy was cut short
    (tmp_path / f".index.{pid}-abc.tmp").mkdir()  # a build that was killed
    (tmp_path / ".notes.old-x").mkdir()  # not ours: left alone
    recover_swaps(tmp_path / "index")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.old-x", "index"]


def test_force_deletes_no_stage_up_front(tmp_path, monkeypatch):
    """`demo --force` interrupted in its first stage leaves every finished artifact in place."""
    from reldistill.workflow import pipeline as pipeline_mod

    esci = write_tiny_esci(tmp_path / "esci")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  path: {esci}\n")
    run = _finished_run(tmp_path / "run")
    for stage in ("data", "eval"):
        (run / stage).mkdir()
        write_manifest(run / stage, stage)
    before = _tree(run)

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_mod.Pipeline, "data_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline_mod.Pipeline(recipe, run, budget_minutes=3, runtime=TEST_RUNTIME).run_all(force=True)
    assert _tree(run) == before


def test_teacher_train_into_a_folder_that_is_not_a_teacher_is_refused(tmp_path):
    """`teacher train --no-resume --output DIR` used to delete DIR/checkpoints and write the adapter into DIR."""
    from reldistill.recipe import load_recipe
    from reldistill.teacher.train import train_teacher

    folder = _finished_run(tmp_path / "run")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "notes.txt").write_text("mine")
    before = _tree(folder)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  max_steps: 0\n")
    with pytest.raises(UserError, match="refusing to replace"):
        train_teacher(load_recipe(recipe), folder, resume=False, runtime=TEST_RUNTIME)
    assert _tree(folder) == before
