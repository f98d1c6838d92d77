"""`reldistill demo` end to end on tiny models: every stage, every system, resume after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import TEST_RUNTIME, assert_user_error
from tests.teacher_testkit import env, one_thread
from tests.distill_testkit import build_tiny_student, write_tiny_esci

BEFORE_LAYERS = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-demo-report-before-layers.json"
# The report's entries that depend on the machine, the temporary folders or the clock, not on the results
# ("*" stands for any one key).
VOLATILE = ["run_dir", "timings_s", "provenance", "files/report_json", "files/report_md", "data/source",
            "details/index/dir", "details/index/student", "details/students/*/model",
            "details/students/*/catalog_embeddings_from", "calibration/*/fitted/dev/data"]
SYSTEMS = {"bm25", "dense-base", "dense-human", "dense-distilled", "hybrid-base", "hybrid-distilled", "hybrid-distilled+rerank"}
STAGES = ["data", "teacher", "candidates", "scores", "student", "student-human", "index", "eval"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    from tests.builders.tiny_teacher import build_tiny_base

    root = tmp_path_factory.mktemp("demo")
    esci = write_tiny_esci(root / "esci")
    base = build_tiny_base(root / "teacher-base")
    student = build_tiny_student(root / "student-base")
    cfg = {
        "data": {"path": str(esci), "dev_fraction": 0.2, "seed": 3},
        "teacher": {"model": str(base), "head_hidden": 16, "lora_r": 4, "lora_alpha": 8, "max_length": 48},
        "train": {"lr": 1e-3, "epochs": 1, "batch_size": 8, "precision": "fp32", "max_minutes": 1, "log_every": 1},
        "score": {"batch_size": 16, "dtype": "float32", "shard_size": 32},
        "distill": {"student": str(student), "bm25_depth": 4, "dense_depth": 4, "unlabeled_depth": 2, "min_judged": 3,
                    "max_unlabeled_queries": 10, "batch_size": 4, "max_steps": 2, "max_seq_length": 32,
                    "eval_split": "dev", "eval_base": False, "precision": "float32"},
        "index": {"kind": "hnsw", "batch_size": 16},  # the demo must build and evaluate the recipe's index kind
        "search": {"rerank_k": 5},
        "eval": {"split": "test", "depth": 20, "base_student": str(student), "teacher_dtype": "float32",
                 "teacher_batch": 8, "batch_size": 16},
    }
    path = root / "tiny-demo.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def stable_view(report: dict, path: tuple[str, ...] = ()) -> dict:
    """``report`` without its VOLATILE entries: what must come out the same on any machine, in any folder."""
    def volatile(key_path: tuple[str, ...]) -> bool:
        return any(len(parts) == len(key_path) and all(p in ("*", k) for p, k in zip(parts, key_path))
                   for parts in (v.split("/") for v in VOLATILE))

    return {k: stable_view(v, path + (k,)) if isinstance(v, dict) else v
            for k, v in report.items() if not volatile(path + (k,))}


def assert_same_results(expected, actual, where: str = "report") -> None:
    """The same keys, texts and flags, and every number within 1e-3 relative (1e-5 absolute near zero): the
    float32 training leaves ~1e-7 of noise from run to run on one CPU and up to ~5e-4 between CPUs (the reference was
    written on an AVX2 CPU; an AVX-512 one gives the human-only student's dev log-loss 0.516155 vs 0.516172); a real
    change moves a figure far more."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (where, set(actual) ^ set(expected))
        for key in expected:
            assert_same_results(expected[key], actual[key], f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (where, actual, expected)
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same_results(e, a, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert actual == pytest.approx(expected, rel=1e-3, abs=1e-5), (where, actual, expected)
    else:
        assert actual == expected, (where, actual, expected)


def _mtimes(run: Path) -> dict[str, float]:
    return {p: (run / p / "manifest.json").stat().st_mtime_ns for p in ("teacher", "student", "student-human")}


@pytest.mark.slow
def test_demo_runs_every_stage_and_resumes_after_an_interruption(recipe, tmp_path, monkeypatch):
    from reldistill.workflow import pipeline as pipeline_mod

    run = tmp_path / "run"
    calls: list[str] = []
    real_index = pipeline_mod.Pipeline.index_stage

    def interrupted(self):
        calls.append("index")
        raise KeyboardInterrupt  # Ctrl-C during the index build

    monkeypatch.setattr(pipeline_mod.Pipeline, "index_stage", interrupted)
    with one_thread(), pytest.raises(KeyboardInterrupt):
        pipeline_mod.Pipeline(recipe, run, budget_minutes=3, runtime=TEST_RUNTIME).run_all()
    state = json.loads((run / "pipeline.json").read_text())
    assert list(state["stages"]) == STAGES[:6] and calls == ["index"]
    assert not (run / "index").exists() and not (run / "report.json").exists()
    before = _mtimes(run)

    monkeypatch.setattr(pipeline_mod.Pipeline, "index_stage", real_index)
    with one_thread():
        state = pipeline_mod.Pipeline(recipe, run, budget_minutes=3, runtime=TEST_RUNTIME).run_all()
    assert list(state["stages"]) == STAGES
    assert _mtimes(run) == before  # finished stages were reused, not redone
    report = json.loads((run / "report.json").read_text())
    # every metric, calibration figure, served choice and finding as the demo gave them before the layers refactor;
    # the calibration fits' records (`fitted`: fit sets, out-of-fold log-losses over 10 fold draws) as of 7616426; the
    # students' P(Exact) maps as of a3d5d0c (Platt, not isotonic: isotonic's lower loss is within one standard error)
    assert_same_results(json.loads(BEFORE_LAYERS.read_text()), stable_view(report))
    assert SYSTEMS <= set(report["systems"]), set(report["systems"])
    assert (run / "report.md").is_file() and (run / "student" / "catalog-vectors.npy").is_file()
    weak = report["task1"]["teacher"]["nDCG@10"] <= report["task1"]["bm25"]["nDCG@10"]
    assert any("no better than BM25" in f for f in report["findings"]) == weak
    assert ("## Findings" in (run / "report.md").read_text()) and report["findings"]
    # the report says what each student trained on: the distilled one on the teacher's pairs, the other on human labels
    trained = {s: v["trained"] for s, v in report["details"]["students"].items()}
    assert trained["dense-base"] is None and trained["dense-human"]["labels"] == "human"
    seen = trained["dense-distilled"]
    assert seen["labels"] == "teacher" and seen["rows_seen"] == seen["steps"] * 4  # distill.batch_size 4
    assert seen["pairs"] == len(pd.read_parquet(run / "scores" / "scores.parquet"))
    assert f"| dense-distilled | teacher | {seen['pairs']:,} | {seen['queries']:,} | {seen['steps']:,} |" in (run / "report.md").read_text()
    for name in STAGES:
        assert state["stages"][name]["summary"] and state["stages"][name]["seconds"] >= 0
    # the recipe's index kind is what was built and what eval evaluated
    assert json.loads((run / "index" / "manifest.json").read_text())["index_kind"] == "hnsw"
    assert report["details"]["index"]["kind"] == "hnsw"
    assert report["details"]["students"]["dense-distilled"]["index"] == "saved index"
    # the served configuration was chosen on dev and is the report's headline on test
    from reldistill.retrieval.serving import read_serving

    serving = read_serving(run)
    assert serving is not None and serving.chosen_on["split"] == "dev"
    assert report["served"]["name"] == serving.name and report["served"]["metrics"]
    assert report["dev"]["chosen"] == serving.name and serving.name in report["dev"]["systems"]


@pytest.mark.slow
def test_demo_cli_reuses_a_finished_run_and_refuses_bad_input(recipe, tmp_path, cli):
    run = tmp_path / "run"
    first = cli("demo", "--config", recipe, "--run", run, "--budget-minutes", 3, env=env())
    assert first.returncode == 0, first.stderr[-3000:]
    again = cli("demo", "--config", recipe, "--run", run, "--budget-minutes", 3, env=env(COLUMNS="400"))
    assert again.returncode == 0, again.stderr[-3000:]
    out = " ".join((again.stdout + again.stderr).split())
    assert out.count("reused") == len(STAGES) and "report.md" in out and f"reldistill serve --run {run}" in out
    assert "dense-distilled" in out  # the comparison table is printed
    assert_user_error(cli("demo", "--config", tmp_path / "missing.yaml", "--run", tmp_path / "r2"), "missing.yaml")
    assert_user_error(cli("demo", "--config", recipe, "--run", tmp_path / "r3", "--budget-minutes", 1), "--budget-minutes")
    assert_user_error(cli("demo", "--config", recipe, "--run", tmp_path / "r4", "--data", tmp_path / "nowhere"), "nowhere")
    assert not (tmp_path / "r3" / "teacher").exists()


def test_demo_reuses_a_bundled_teacher_only_for_its_data_and_says_so(recipe, tmp_path, monkeypatch, capsys):
    """A bundle trained on this data and dev carve is installed (no training, no teacher minutes); other data or
    `--train-teacher` trains here, and the demo's output names the teacher it used."""
    from reldistill.teacher.bundle import make_bundle
    from reldistill.workflow import pipeline as pipeline_mod

    cfg = yaml.safe_load(recipe.read_text())
    with one_thread():
        trained = pipeline_mod.Pipeline(recipe, tmp_path / "first", budget_minutes=3, runtime=TEST_RUNTIME)
        trained.teacher_stage(force=False)
    bundle = make_bundle(trained.run.teacher, tmp_path / "bundle", "python scripts/train_bundled_teacher.py", cfg["data"]["path"])
    cfg["train"]["bundled"] = str(bundle)
    with_bundle = tmp_path / "bundled.yaml"
    with_bundle.write_text(yaml.safe_dump(cfg), encoding="utf-8")

    def no_training(*a, **k):
        raise AssertionError("the bundled teacher should have been reused")

    monkeypatch.setattr("reldistill.teacher.train.train_teacher", no_training)
    pipe = pipeline_mod.Pipeline(with_bundle, tmp_path / "run", budget_minutes=3, runtime=TEST_RUNTIME)
    assert pipe.bundle == bundle and pipe.stage_inputs("teacher")["bundle"]
    summary = pipe.teacher_stage(force=False)
    out = " ".join(capsys.readouterr().err.split())  # the console writes to stderr
    assert summary.startswith("bundled teacher (not trained here)") and "BUNDLED teacher" in out
    assert (pipe.run.teacher / "bundle.json").is_file()
    assert (pipe.run.teacher / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    # --train-teacher, or another dev carve of the same files: the bundle is not used
    assert pipeline_mod.Pipeline(with_bundle, tmp_path / "r2", budget_minutes=3, train_teacher=True, runtime=TEST_RUNTIME).bundle is None
    cfg["data"]["seed"] = cfg["data"]["seed"] + 1
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert pipeline_mod.Pipeline(other, tmp_path / "r3", budget_minutes=3, runtime=TEST_RUNTIME).bundle is None
    assert "was trained with other data.seed settings — training one here" in " ".join(capsys.readouterr().err.split())
