"""Student calibration: fitted on the dev split's judged pairs (cosine → P(Exact)), stored beside the student,
picked up by the search pipeline, and refitted by `reldistill calibrate --run`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reldistill.config import DataConfig
from tests.retrieval_testkit import torch_threads
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    from tests.builders.tiny_student import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("calib-student") / "student", seed=0)


def test_calibrate_student_fits_on_dev_and_keeps_a_current_fit(student, esci_dir):
    from reldistill.calibration import load_calibration
    from reldistill.student.calibrate import calibrate_student

    data_cfg = DataConfig(path=str(esci_dir))
    with torch_threads(1):
        cal, fitted = calibrate_student(student, data_cfg, runtime=TEST_RUNTIME)
        again, refitted = calibrate_student(student, data_cfg, runtime=TEST_RUNTIME)
    assert fitted and not refitted
    saved = load_calibration(student)
    assert saved.transform == "identity" and saved.dev["split"] == "dev" and saved.dev["pairs"] > 100
    assert again.to_dict() == cal.to_dict()
    p = saved.probabilities(np.linspace(-1, 1, 50))
    assert np.all(np.diff(p["p_exact"]) >= -1e-12) and np.all(p["p_exact_or_substitute"] >= p["p_exact"])


def test_pipeline_over_a_calibrated_student_returns_probabilities(student, esci_dir):
    from reldistill.data import load_esci
    from reldistill.retrieval.pipeline import SearchPipeline
    from reldistill.student.calibrate import calibrate_student

    data = load_esci(DataConfig(path=str(esci_dir)))
    products = data.products.head(300)
    with torch_threads(1):
        calibrate_student(student, DataConfig(path=str(esci_dir)), runtime=TEST_RUNTIME)
        pipe = SearchPipeline.from_data(products, None, str(student), runtime=TEST_RUNTIME)
        res = pipe.search("red running shoes", mode="dense", k=5)
        everything = pipe.search("red running shoes", mode="hybrid", k=10)
        cut = sorted(h.p_exact for h in everything.results)[5]
        kept = pipe.search("red running shoes", mode="hybrid", k=10, min_score=cut)
    assert pipe.student_calibration is not None and all(h.p_exact is not None for h in res.results)
    assert [h.p_exact for h in res.results] == sorted((h.p_exact for h in res.results), reverse=True)
    assert [h.product_id for h in kept.results] == [h.product_id for h in everything.results if h.p_exact >= cut]
    assert json.dumps(res.to_dict())  # the response (with its probabilities) is plain JSON


@pytest.mark.slow  # a tiny teacher and student through calibrate_run and a whole eval (~1 min on an idle CPU)
def test_calibrate_run_then_eval_reports_ece_brier_and_the_diagram(student, esci_dir, tmp_path):
    """`calibrate_run` fits the run's teacher and student on dev; eval reports their calibration on test."""
    import shutil

    from reldistill.artifacts import write_manifest
    from reldistill.eval.compare import Evaluation
    from reldistill.eval.report import write_report
    from reldistill.recipe.eval import EvalConfig
    from reldistill.run_layout import RunDir
    from tests.builders.tiny_teacher import build_tiny_teacher
    from reldistill.workflow.calibrate import calibrate_run

    root = tmp_path / "run"
    build_tiny_teacher(root / "teacher", seed=3)
    shutil.copytree(student, root / "student")
    (root / "student" / "calibration.json").unlink(missing_ok=True)
    write_manifest(root / "student", "student", student_base=str(student))
    data_cfg = DataConfig(path=str(esci_dir))
    with torch_threads(1):
        fitted = calibrate_run(RunDir(root), data_cfg, dtype="float32", batch_size=16, runtime=TEST_RUNTIME)
        assert set(fitted) == {"teacher", "student"} and all(f["fitted_now"] for f in fitted.values())
        assert not calibrate_run(RunDir(root), data_cfg, dtype="float32", batch_size=16, runtime=TEST_RUNTIME)["teacher"]["fitted_now"]
        # a teacher calibrated on part of dev (training fits on the multi-judged queries it ranks) is refit on all of it
        stored = json.loads((root / "teacher" / "calibration.json").read_text())
        whole = stored["dev"]["pairs"]
        stored["dev"]["pairs"] = whole - 1
        (root / "teacher" / "calibration.json").write_text(json.dumps(stored))
        again = calibrate_run(RunDir(root), data_cfg, dtype="float32", batch_size=16, runtime=TEST_RUNTIME)["teacher"]
        assert again["fitted_now"] and again["dev"]["pairs"] == whole
        cfg = EvalConfig(depth=20, teacher_dtype="float32", systems=["teacher", "dense-distilled"], max_queries=6, choose_on="none")
        report = write_report(RunDir(root), Evaluation(root, data_cfg, cfg, runtime=TEST_RUNTIME).run_all())
    cal = report["calibration"]
    assert set(cal) == {"teacher", "dense-distilled"} and cal["dense-distilled"]["served_student"]
    judged = report["data"]["judged_pairs"]
    for block in cal.values():
        assert block["pairs"] == judged and 0 <= block["p_exact"]["ece"] <= 1 and 0 <= block["p_exact"]["brier"] <= 1
        assert block["fitted"]["dev"]["split"] == "dev"
    assert "raw_ece" in cal["teacher"]["p_exact"] and "raw_ece" not in cal["dense-distilled"]["p_exact"]
    md = (root / "report.md").read_text()
    assert "## Calibration" in md and "(served student)" in md
    assert (root / "eval" / "reliability.png").is_file()
