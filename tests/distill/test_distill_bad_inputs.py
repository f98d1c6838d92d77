"""Bad inputs to `reldistill distill`: one clear sentence, non-zero exit, nothing written under a final name."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_user_error
from reldistill.distill.scores import load_scores, validate_scores
from reldistill.errors import UserError
from reldistill.recipe import load_recipe

CATALOG = {"P1", "P2", "P3"}


def good() -> pd.DataFrame:
    return pd.DataFrame({"query_id": ["q", "q", "r"], "query": ["red shoe", "red shoe", "mug"],
                         "product_id": ["P1", "P2", "P3"], "teacher_score": [0.9, 0.1, 0.5],
                         "soft_label": [1.0, np.nan, np.nan]})


def bad(**changes) -> pd.DataFrame:
    df = good()
    for k, v in changes.items():
        if v is None:
            df = df.drop(columns=k)
        else:
            df[k] = v
    return df


CASES = {
    "missing teacher_score": (bad(teacher_score=None), "no column 'teacher_score'"),
    "missing query": (bad(query=None), "no column 'query'"),
    "missing product_id": (bad(product_id=None), "no column 'product_id'"),
    "unknown product id": (bad(product_id=["P1", "P9", "P3"]), "product_id 'P9'"),
    "empty candidate list": (good().iloc[:0], "no rows"),
    "NaN score": (bad(teacher_score=[0.9, np.nan, 0.2]), "NaN"),
    "infinite score": (bad(teacher_score=[0.9, np.inf, 0.2]), "NaN/infinite"),
    "text scores": (bad(teacher_score=["high", "low", "mid"]), "must be numeric"),
    "logits not probabilities": (bad(teacher_score=[4.2, -3.0, 0.1]), "probabilities in [0, 1]"),
    "None query": (bad(query=["red shoe", None, "mug"]), "empty value"),
    "blank query": (bad(query=["red shoe", "  ", "mug"]), "empty queries"),
    "float product ids": (bad(product_id=[1.5, 2.5, 3.5]), "must hold text"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_scores_tables(name):
    df, needle = CASES[name]
    with pytest.raises(UserError, match=None) as e:
        validate_scores(df, CATALOG, "scores file s.parquet")
    assert needle in str(e.value) and "s.parquet" in str(e.value)


def test_good_scores_pass_and_dedupe():
    df = pd.concat([good(), good().iloc[:1]])
    out = validate_scores(df, CATALOG, "x")
    assert len(out) == 3 and out["teacher_score"].dtype == float


def test_unreadable_files(tmp_path):
    (tmp_path / "empty.parquet").write_bytes(b"")
    trunc = tmp_path / "trunc.parquet"
    good().to_parquet(trunc)
    trunc.write_bytes(trunc.read_bytes()[:60])
    for path, needle in ((tmp_path / "nope.parquet", "does not exist"), (tmp_path / "empty.parquet", "empty (0 bytes)"),
                         (trunc, "truncated")):
        with pytest.raises(UserError) as e:
            load_scores(path, CATALOG)
        assert needle in str(e.value)


@pytest.mark.parametrize("section,needle", [
    ({"loss": "cosine"}, "distill.loss must be one of"),
    ({"lossy": 1}, "unknown key(s) lossy"),
    ({"batch_size": "big"}, "distill.batch_size must be of type int"),
    ({"eval_split": "test"}, "never test"),
    ({"human_weight": 1.5}, "human_weight must be in [0, 1]"),
    ({"bm25_depth": 0, "dense_depth": 0}, "both 0"),
])
def test_bad_config(tmp_path, section, needle):
    p = tmp_path / "r.yaml"
    p.write_text(json.dumps({"distill": section}))
    with pytest.raises(UserError) as e:
        load_recipe(p)
    assert needle in str(e.value)


def test_bad_query_list(tmp_path, esci_dir):
    from reldistill.distill.mine import read_query_list

    (tmp_path / "q.csv").write_text("text\nred shoe\n")
    (tmp_path / "blank.txt").write_text("\n  \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 mug\n".encode("latin-1"))
    for name, needle in (("q.csv", "no column 'query'"), ("blank.txt", "no usable query"), ("latin1.txt", "not UTF-8"),
                         ("missing.txt", "does not exist")):
        with pytest.raises(UserError) as e:
            read_query_list(tmp_path / name)
        assert needle in str(e.value)


@pytest.mark.slow
def test_cli_bad_inputs_exit_cleanly_and_write_nothing(cli, tmp_path, esci_dir):
    run = tmp_path / "run"
    (run / "scores").mkdir(parents=True)
    bad(teacher_score=None).to_parquet(run / "scores" / "scores.parquet")
    proc = cli("distill", "train", "--run", run, "--data", esci_dir)
    assert_user_error(proc, "no column 'teacher_score'", "scores.parquet")
    assert not (run / "student").exists() and not (run / "student.checkpoints").exists()
    proc = cli("distill", "label", "--run", run, "--data", esci_dir)
    assert_user_error(proc, "candidates.parquet", "distill mine")
    proc = cli("distill", "train", "--run", run, "--loss", "listwise")
    assert_user_error(proc, "distill.loss must be one of")
    unknown = good().assign(product_id=["P1", "P2", "NOT-IN-CATALOG"])
    unknown.to_parquet(run / "scores" / "scores.parquet")
    proc = cli("distill", "train", "--run", run, "--data", esci_dir)
    assert_user_error(proc, "product_id 'P1'", "not in the products catalog")
    assert not (run / "student").exists()
