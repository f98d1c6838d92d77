"""The run directory's layout has one home: reldistill.run_layout."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO
from reldistill.artifacts import write_manifest
from reldistill.errors import UserError
from reldistill.run_layout import STAGE_DIRS, RunDir, index_dir_of, run_of_index

PACKAGES = ("reldistill", "teacher", "student", "distill", "retrieval", "eval", "workflow")
# a run part named by a string literal: `/ "student"`, "serving.json", ...
LITERAL = re.compile(r'/ "(data|teacher|candidates|scores|student|student-human|index|eval|export)"'
                     r'|"(report\.json|report\.md|serving\.json|pipeline\.json|candidates\.parquet|scores\.parquet|\.index-cache)"')


def test_paths_and_done(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        RunDir(tmp_path / "missing")
    assert not (tmp_path / "missing").exists() and RunDir(tmp_path / "missing", check=False).student == tmp_path / "missing" / "student"
    run = RunDir(tmp_path / "r", create=True)
    assert (run.candidates_file, run.scores_file) == (tmp_path / "r/candidates/candidates.parquet", tmp_path / "r/scores/scores.parquet")
    assert (run.report_json, run.serving_json, run.state_json) == (tmp_path / "r/report.json", tmp_path / "r/serving.json",
                                                                   tmp_path / "r/pipeline.json")
    assert {run.stage_dir(s).name for s in STAGE_DIRS} == set(STAGE_DIRS) and run.student_human.name == "student-human"
    for stage in ("candidates", "student-human"):
        assert not run.done(stage)
        write_manifest(run.stage_dir(stage), stage)
        assert run.done(stage)
    with pytest.raises(KeyError):
        run.done("students")


def test_index_dir_and_its_run(tmp_path):
    assert index_dir_of(tmp_path) == tmp_path / "index"
    assert index_dir_of(tmp_path / "index") == tmp_path / "index"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "dense.json").write_text("{}")
    assert index_dir_of(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert run_of_index(tmp_path / "index").teacher == tmp_path / "teacher"


def test_other_data_reports_are_named_by_data_and_split(tmp_path):
    run = RunDir(tmp_path, create=True)
    assert run.other_eval(tmp_path / "my data:v2", "test") == tmp_path / "eval" / "other" / "my_data_v2-test"


def test_no_run_path_literal_outside_the_layout_module():
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))
            if p.name != "run_layout.py"
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if LITERAL.search(line)]
    assert hits == []
