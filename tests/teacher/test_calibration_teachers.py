"""Calibration of real (tiny) teachers: fitted at the end of `teacher train`, two teachers trained with other seeds
and budgets keep the same precision of Exact at one min_score on test, refit with `reldistill calibrate`,
and the probabilities reach rerank results and `teacher score` output."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.teacher_testkit import one_thread, write_recipe
from tests.conftest import TEST_RUNTIME

pytestmark = pytest.mark.slow  # trains two tiny teachers (~40 s); test_calibration.py holds the fast synthetic version

GOOD, BAD, FILL = ["premium", "original", "genuine"], ["broken", "fake", "used"], ["item", "thing", "pack", "set"]


def write_learnable_table(path: Path, queries: int = 120, seed: int = 0) -> Path:
    """Judged pairs whose P(Exact) is 0.1 / 0.5 / 0.9 by the number of 'good' words in the title (a tiny model learns it)."""
    rng = random.Random(seed)
    rows = []
    for qi in range(queries):
        q = f"{rng.choice(['shoes', 'tea', 'cable', 'mug', 'lamp', 'bag'])} {rng.choice(['red', 'blue', 'big', 'small'])}"
        for pi in range(6):
            g = rng.randint(0, 2)
            words = rng.sample(GOOD, g) + rng.sample(BAD, 2 - g) + [rng.choice(FILL)]
            rng.shuffle(words)
            label = "E" if rng.random() < (0.1, 0.5, 0.9)[g] else rng.choice("SCI")
            rows.append(dict(query_id=f"q{qi}", query=q, product_id=f"p{qi}_{pi}", product_title=" ".join(words) + f" {pi}",
                             label=label, split="test" if qi >= queries * 0.7 else "train"))
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two tiny teachers on the same data: seed 1 for 1 epoch, seed 2 for 3 epochs."""
    from reldistill.recipe import load_recipe
    from tests.builders.tiny_teacher import build_tiny_base
    from reldistill.teacher.train import train_teacher

    root = tmp_path_factory.mktemp("calib-teachers")
    base = build_tiny_base(root / "base", seed=0)
    data = write_learnable_table(root / "pairs.csv", queries=200)  # dev (stratified carve) 28 queries, test 60
    out = {"root": root, "data": data}
    with one_thread():
        for seed, epochs in ((1, 1), (2, 3)):
            recipe = write_recipe(root / f"recipe{seed}.yaml", base, data, seed=seed, epochs=epochs, checkpoint_fraction=1.0)
            out[seed] = train_teacher(load_recipe(recipe), root / f"teacher{seed}", progress=False, runtime=TEST_RUNTIME)
            out[f"recipe{seed}"] = recipe
    return out


def _split(recipe: Path, name: str) -> pd.DataFrame:
    from reldistill.recipe import load_recipe
    from reldistill.teacher.pairs import split_pairs

    return split_pairs(load_recipe(recipe).data)[name]


def _test_pairs(recipe: Path) -> pd.DataFrame:
    return _split(recipe, "test")


def test_train_end_fits_and_records_the_calibration(teachers):
    for seed in (1, 2):
        d = teachers[seed]
        m = json.loads((d / "manifest.json").read_text())
        assert m["calibration"]["file"] == "calibration.json" and (d / "calibration.json").is_file()
        assert m["calibration"]["dev"]["split"] == "dev" and m["calibration"]["dev"]["pairs"] == m["dev_pairs"]
        assert set(m["calibration"]["methods"].values()) <= {"platt", "isotonic"}


def test_two_teachers_at_one_min_score_keep_the_same_precision_of_exact(teachers):
    from reldistill.teacher import Teacher

    test = _test_pairs(teachers["recipe1"])
    exact = (test["esci_label"] == "E").to_numpy()
    raw, cal = {}, {}
    with one_thread():
        for seed in (1, 2):
            t = Teacher.load(teachers[seed], dtype="float32", runtime=TEST_RUNTIME)
            raw[seed] = t.score_pairs(test["query"].tolist(), test["text"].tolist())
            cal[seed] = t.calibration.p_exact(raw[seed])
    for min_score in (0.3, 0.5, 0.7):
        prec = {s: exact[cal[s] >= min_score].mean() for s in (1, 2)}
        assert all((cal[s] >= min_score).sum() >= 20 for s in (1, 2)), min_score
        assert abs(prec[1] - prec[2]) <= 0.05, (min_score, prec)
    assert not np.allclose(raw[1], raw[2], atol=0.05)  # the raw scores are on different scales


def test_rerank_and_teacher_score_carry_probabilities(teachers, tmp_path):
    from reldistill.teacher.rerank import TeacherReranker
    from reldistill.teacher.score import score_file

    test = _test_pairs(teachers["recipe1"]).head(12)
    with one_thread():
        rr = TeacherReranker.load(teachers[1], dtype="float32", runtime=TEST_RUNTIME)
        ranked = rr.rerank(test["query"].iloc[0], list(zip(test["product_id"], test["text"])))
        assert all(r.p_exact is not None and r.p_exact_or_substitute >= r.p_exact for r in ranked)
        assert [r.p_exact for r in ranked] == sorted((r.p_exact for r in ranked), reverse=True)
        pairs = tmp_path / "pairs.parquet"
        test[["query", "product_id", "text"]].to_parquet(pairs)
        out = pd.read_parquet(score_file(teachers[1], pairs, tmp_path / "scored.parquet", progress=False, runtime=TEST_RUNTIME))
    expect = rr.calibration.probabilities(out["teacher_score"].to_numpy())
    assert np.allclose(out["p_exact"], expect["p_exact"], atol=1e-6)
    assert np.allclose(out["p_exact_or_substitute"], expect["p_exact_or_substitute"], atol=1e-6)


def test_calibrate_refits_a_teacher_without_one_and_keeps_a_current_one(teachers, tmp_path):
    from typer.testing import CliRunner

    from reldistill.workflow.cli import app

    run = tmp_path / "run"
    shutil.copytree(teachers[1], run / "teacher")
    (run / "teacher" / "calibration.json").unlink()
    manifest = (run / "teacher" / "manifest.json").read_bytes()
    runner = CliRunner()
    with one_thread():
        first = runner.invoke(app, ["calibrate", "--run", str(run), "--config", str(teachers["recipe1"])])
        assert first.exit_code == 0, first.output
        dev = _split(teachers["recipe1"], "dev")
        assert f"teacher: fitted on {len(dev)} dev pairs of {dev['query_id'].nunique()} queries" in first.output
        assert (run / "teacher" / "calibration.json").is_file()
        assert (run / "teacher" / "manifest.json").read_bytes() == manifest  # raw scores and what depends on them stay current
        again = runner.invoke(app, ["calibrate", "--run", str(run), "--config", str(teachers["recipe1"])])
    assert again.exit_code == 0 and "teacher: kept" in again.output
