"""`reldistill demo` redoes a finished stage (and what follows it) when its inputs change, and only then.

The heavy stage bodies are replaced by quick ones that write the same artifacts (manifest, candidates,
report); the stage runner, the input digests and the data fingerprint are the real ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from reldistill.artifacts import write_manifest, write_parquet
from tests.distill_testkit import write_tiny_esci

STAGES = ["data", "teacher", "candidates", "scores", "student", "student-human", "index", "eval"]


@pytest.fixture
def quick_stages(monkeypatch):
    """Replace the stage bodies by quick writers of their artifacts; returns the list of stages run."""
    from reldistill.workflow import pipeline as pipeline_mod

    calls: list[str] = []
    P = pipeline_mod.Pipeline

    def teacher(self, fresh):
        calls.append("teacher")
        write_manifest(self.run.teacher, "teacher")
        return "teacher"

    def candidates(self):
        calls.append("candidates")
        write_parquet(self.run.candidates_file, pd.DataFrame({"query": ["a"], "product_id": ["P001"]}))
        write_manifest(self.run.candidates, "candidates")
        return "candidates"

    def scores(self):
        calls.append("scores")
        write_manifest(self.run.scores, "scores")
        return "scores"

    def student(self, human, fresh):
        calls.append("student-human" if human else "student")
        write_manifest(self.run.root / ("student-human" if human else "student"), "student")
        return "student"

    def index(self):
        calls.append("index")
        write_manifest(self.run.index, "index")
        return "index"

    def evaluate(self):
        calls.append("eval")
        write_manifest(self.run.eval, "eval")
        self.run.report_json.write_text("{}")
        return "eval"

    real_data = P.data_stage

    def data(self):
        calls.append("data")
        return real_data(self)

    for name, fn in (("data_stage", data), ("teacher_stage", teacher), ("candidates_stage", candidates), ("scores_stage", scores),
                     ("student_stage", student), ("index_stage", index), ("eval_stage", evaluate)):
        monkeypatch.setattr(P, name, fn)
    return calls


@pytest.fixture
def recipe(tmp_path) -> Path:
    esci = write_tiny_esci(tmp_path / "esci")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": str(esci)}, "eval": {"depth": 20}}), encoding="utf-8")
    return path


def _run(recipe: Path, run: Path, **kw):
    from reldistill.workflow.pipeline import Pipeline

    return Pipeline(recipe, run, budget_minutes=3, **kw).run_all()


def test_a_finished_run_is_reused_when_nothing_changed(recipe, tmp_path, quick_stages):
    _run(recipe, tmp_path / "run")
    assert quick_stages == STAGES
    quick_stages.clear()
    _run(recipe, tmp_path / "run")
    assert quick_stages == []


def test_rewritten_candidates_invalidate_the_scores_and_everything_after(recipe, tmp_path, quick_stages, capsys):
    run = tmp_path / "run"
    _run(recipe, run)
    quick_stages.clear()
    # what `reldistill distill mine` does: a new candidates.parquet and manifest, the old scores manifest stays
    write_parquet(run / "candidates" / "candidates.parquet", pd.DataFrame({"query": ["b"], "product_id": ["P002"]}))
    write_manifest(run / "candidates", "candidates")
    _run(recipe, run)
    assert quick_stages == ["scores", "student", "index", "eval"]
    assert "inputs changed since it ran (candidates)" in " ".join(capsys.readouterr().err.split())


def test_other_data_redoes_every_stage(recipe, tmp_path, quick_stages):
    run = tmp_path / "run"
    _run(recipe, run)
    quick_stages.clear()
    other = shutil.copytree(tmp_path / "esci", tmp_path / "other")
    ex = pd.read_parquet(other / "shopping_queries_dataset_examples.parquet")
    ex.iloc[: len(ex) - 1].to_parquet(other / "shopping_queries_dataset_examples.parquet", index=False)
    _run(recipe, run, data_path=str(other))
    assert quick_stages == STAGES


def test_an_edited_recipe_section_redoes_only_the_stages_that_read_it(recipe, tmp_path, quick_stages):
    run = tmp_path / "run"
    _run(recipe, run)
    cfg = yaml.safe_load(recipe.read_text())
    for section, value, redone in (("eval", {"depth": 30}, ["eval"]),
                                   ("index", {"kind": "hnsw"}, ["index", "eval"]),
                                   ("distill", {"lr": 1e-4}, ["student", "student-human", "index", "eval"]),
                                   ("score", {"batch_size": 8}, ["scores", "student", "index", "eval"])):
        quick_stages.clear()
        cfg[section] = value
        recipe.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        _run(recipe, run)
        assert quick_stages == redone, section


def test_stages_made_outside_the_demo_are_adopted_then_tracked(recipe, tmp_path, quick_stages):
    run = tmp_path / "run"
    _run(recipe, run)
    (run / "pipeline.json").unlink()  # as if every stage had been made by its own command
    quick_stages.clear()
    _run(recipe, run)
    assert quick_stages == []
    write_manifest(run / "teacher", "teacher", retrained=True)  # `reldistill teacher train` again
    _run(recipe, run)
    assert quick_stages == ["scores", "student", "index", "eval"]
