"""`distill train` on its own refuses teacher scores of candidates that were re-mined after `distill label`."""

from __future__ import annotations

import pandas as pd
import pytest

from reldistill.artifacts import file_fingerprint, write_manifest
from reldistill.config import DataConfig
from reldistill.distill.scores import check_scores_current
from reldistill.distill.train import train_student
from reldistill.errors import UserError
from reldistill.recipe.distill import DistillConfig
from tests.conftest import TEST_RUNTIME


def labelled_run(root, candidates_field=None):
    scores = root / "scores"
    scores.mkdir(parents=True)
    cands = scores / "candidates.parquet"
    pd.DataFrame({"query_id": [1, 1], "query": ["mug", "mug"], "product_id": ["P1", "P2"]}).to_parquet(cands)
    pd.DataFrame({"query": ["mug", "mug"], "product_id": ["P1", "P2"], "teacher_score": [0.9, 0.1]}).to_parquet(scores / "scores.parquet")
    write_manifest(scores, "scores", candidates=candidates_field or str(cands.resolve()), candidates_sha256=file_fingerprint(cands))
    return scores


@pytest.mark.parametrize("recorded", ["absolute", "relative"])  # distill label records it absolute, the demo relative
def test_re_mined_candidates_refuse_the_old_scores(tmp_path, recorded):
    scores = labelled_run(tmp_path / "run", None if recorded == "absolute" else "elsewhere/run/scores/candidates.parquet")
    check_scores_current(scores / "scores.parquet")  # unchanged: fine
    pd.DataFrame({"query_id": [1], "query": ["mug"], "product_id": ["P3"]}).to_parquet(scores / "candidates.parquet")
    with pytest.raises(UserError, match="distill label"):
        check_scores_current(scores / "scores.parquet")
    with pytest.raises(UserError, match="changed after `distill label`"):  # before loading data or the student
        train_student(scores / "scores.parquet", tmp_path / "student", DistillConfig(student="no-such-student"),
                      DataConfig(path=str(tmp_path / "no-data")), runtime=TEST_RUNTIME)
    assert not (tmp_path / "student").exists()


def test_scores_without_a_label_manifest_are_not_checked(tmp_path):
    scores = labelled_run(tmp_path / "run")
    (scores / "manifest.json").unlink()
    pd.DataFrame({"query_id": [2], "query": ["cup"], "product_id": ["P9"]}).to_parquet(scores / "candidates.parquet")
    check_scores_current(scores / "scores.parquet")
    check_scores_current(tmp_path / "exported.jsonl")  # not a file here: nothing to compare
