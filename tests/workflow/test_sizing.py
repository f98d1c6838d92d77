"""The demo's stages sized from measured speed: the arithmetic (fake speeds) and the pipeline wiring (fake probe)."""

from __future__ import annotations

import json

import pytest

from reldistill.workflow import sizing as sz
from tests.conftest import TEST_RUNTIME

# what work_of counted on the sample before judged train queries became a sized knob: 5,491 teacher pairs whatever
# the sizes = 1,776 of test Task-1 and rerank pools + 70 fully judged train queries x 53.09 pairs
WORK = sz.Work(catalog=8462, catalog_encodes=2, training_encodes=2, fixed_pairs=1776, pairs_per_unlabeled=3.24,
               pairs_per_dev_rerank_query=13, max_unlabeled=250, max_dev_rerank=40,
               int8_check_encodes=1, pairs_per_judged=(5491 - 1776) / 70, max_judged=70)
# esci-extended as work_of counts it: 240 fully judged train queries of 33.2 pairs, 5,169 test Task-1 and pool pairs
EXTENDED = sz.Work(catalog=15067, catalog_encodes=2, training_encodes=2, fixed_pairs=5169, pairs_per_unlabeled=3.24,
                   pairs_per_dev_rerank_query=13, max_unlabeled=250, max_dev_rerank=40, int8_check_encodes=1,
                   pairs_per_judged=33.25, max_judged=240, teacher_dev_pairs=1077)
DEMO = sz.DemoConfig()


def _plan(teacher: float, steps: float, docs: float, demo=DEMO, work=WORK):
    return sz.plan(demo, sz.Speeds(teacher, steps, docs, backend_docs_per_s=2.5 * docs), work)


def test_a_fast_cpu_gets_the_caps_and_gives_the_rest_to_the_teacher():
    p = _plan(200.0, 20.0, 5000.0)
    assert p["sizes"] == {"unlabeled_queries": 250, "student_steps": 110, "dev_rerank_queries": 40, "judged_queries": 70,
                          "teacher_minutes": DEMO.max_teacher_minutes}  # never above the recipe's caps
    assert p["fits"] and p["predicted_total_s"] <= p["target_s"]


def test_slower_cpus_get_fewer_pairs_and_steps_never_below_the_minimums():
    last = None
    for speed in (1.0, 0.8, 0.6, 0.45, 0.35, 0.25, 0.1):  # this machine's idle fp32 speeds, scaled down
        p = _plan(14.0 * speed, 1.0 * speed, 120.0 * speed)
        z = p["sizes"]
        assert DEMO.min_teacher_minutes <= z["teacher_minutes"] <= DEMO.max_teacher_minutes
        assert DEMO.min_unlabeled_queries <= z["unlabeled_queries"] <= WORK.max_unlabeled
        assert DEMO.min_student_steps <= z["student_steps"] <= DEMO.max_student_steps
        assert DEMO.min_dev_rerank_queries <= z["dev_rerank_queries"] <= WORK.max_dev_rerank
        assert DEMO.min_judged_queries <= z["judged_queries"] <= WORK.max_judged
        if last is not None:
            assert all(z[k] <= last[k] for k in z if k != "teacher_minutes"), (speed, z, last)
            assert z["teacher_minutes"] <= last["teacher_minutes"] + 0.1  # the teacher gets what rounding the sizes leaves
        if p["fits"]:  # the parts add up to the target at most
            assert sum(p["predicted_s"].values()) == pytest.approx(p["predicted_total_s"], abs=0.5) and p["predicted_total_s"] <= p["target_s"]
        last = z
    assert z == {"unlabeled_queries": 50, "student_steps": 25, "dev_rerank_queries": 10, "judged_queries": 30, "teacher_minutes": 1.0}
    assert not p["fits"]  # a tenth of the speed cannot fit: minimums, and it says so


def test_between_the_extremes_the_sized_work_fills_the_target():
    p = _plan(14.0, 1.0, 120.0)  # this CPU idle, fp32 (AMD EPYC, AVX2, no AVX512-BF16)
    assert 0 < p["fraction_of_caps"] < 1
    assert p["sizes"]["teacher_minutes"] == pytest.approx(DEMO.min_teacher_minutes, abs=0.1)  # the others only shrink once the teacher is at its minimum
    assert p["predicted_total_s"] == pytest.approx(p["target_s"], abs=20)
    spent = sz.plan(DEMO, sz.Speeds(14.0, 1.0, 120.0, 300.0), WORK, spent_s=120.0)  # the measuring counts in the target
    assert spent["predicted_s"]["measuring"] == 120.0
    assert spent["fraction_of_caps"] < p["fraction_of_caps"] and all(spent["sizes"][k] <= p["sizes"][k] for k in p["sizes"])


def test_the_prediction_matches_the_measured_no_bf16_demo():
    """Calibration: the fresh-clone `RELDISTILL_CPU_BF16=0 make demo` of session 4 (/tmp/demo1, 2-core Xeon,
    fp32 everywhere) measured these speeds in its probe and ran at the minimum sizes; its probe and stages
    took 850.6 s (probe 68.6 + data 0.2, teacher 81.1, candidates 51.0, scores 255.6, student 105.8,
    student-human 82.1, index 6.5 — the student's saved vectors, no encode — eval 199.7). The old count
    (an index encode and an int8-gate encode through ONNX at 107 docs/s) predicted 1,088.9 s."""
    docs = {"torch": 198.8, "onnx": 106.7}  # the probe's catalog docs/s per backend
    from reldistill.student.encode import choose_fastest

    backend = choose_fastest({b: {"docs_per_s": d, "query_p50_ms": 1.0} for b, d in docs.items()})
    assert backend == "torch"  # auto picks by throughput: the index reuses the student's vectors, no int8 gate
    work = sz.Work(**{**WORK.__dict__, "max_unlabeled": 50, "max_dev_rerank": 10})  # the sizes it ran at
    demo = sz.DemoConfig(target_minutes=15.5, max_student_steps=30, max_teacher_minutes=1.0, min_judged_queries=70)
    p = sz.plan(demo, sz.Speeds(13.85, 0.541, 198.8, docs[backend], {"student": {"backend": backend}}), work, spent_s=68.6)
    assert p["sizes"] == {"unlabeled_queries": 50, "student_steps": 30, "dev_rerank_queries": 10, "judged_queries": 70,
                          "teacher_minutes": 1.0}
    measured = 850.6
    assert abs(p["predicted_total_s"] - measured) / measured < 0.05, p["predicted_s"]
    onnx = sz.plan(demo, sz.Speeds(13.85, 0.541, 198.8, docs["onnx"], {"student": {"backend": "onnx"}}), work, spent_s=68.6)
    assert onnx["predicted_s"]["catalog encodes"] > p["predicted_s"]["catalog encodes"]  # an onnx index pays its int8 gate


def test_a_bundled_teacher_leaves_its_minutes_to_labelling_judged_queries():
    """esci-extended on a slow CPU: with the teacher's minutes at 0 (the bundled teacher) the judged train queries the
    teacher labels are what grows first; with a training teacher they shrink towards their minimum."""
    bundled = sz.plan(sz.DemoConfig(min_teacher_minutes=0.0, max_teacher_minutes=0.0), sz.Speeds(8.0, 0.5, 200.0, 200.0), EXTENDED)
    trains = sz.plan(DEMO, sz.Speeds(8.0, 0.5, 200.0, 200.0), EXTENDED)
    assert bundled["sizes"]["teacher_minutes"] == 0.0 and "teacher training" in bundled["predicted_s"]
    assert bundled["sizes"]["judged_queries"] >= trains["sizes"]["judged_queries"] >= DEMO.min_judged_queries
    assert "teacher dev evaluations" not in bundled["predicted_s"]
    evals = trains["predicted_s"]["teacher dev evaluations"]  # a training teacher's minutes hold its two dev passes
    assert evals == pytest.approx(2 * 1077 / 8.0, abs=0.1)
    assert trains["sizes"]["teacher_minutes"] * 60 == pytest.approx(trains["predicted_s"]["teacher training"] + evals, abs=1)
    cost = bundled["predicted_s"]["teacher scoring (judged train queries)"]
    assert cost == pytest.approx(bundled["sizes"]["judged_queries"] * EXTENDED.pairs_per_judged / 8.0, abs=0.1)


def test_mining_keeps_a_seeded_sample_of_judged_queries(esci_dir):
    from reldistill.config import DataConfig
    from reldistill.data import load_esci
    from reldistill.recipe.distill import DistillConfig
    from reldistill.distill.mine import mine_candidates

    data = load_esci(DataConfig(path=str(esci_dir)))
    cfg = DistillConfig(bm25_depth=2, dense_depth=0, unlabeled_depth=0, max_unlabeled_queries=0, drop_near_duplicates=False)
    full = mine_candidates(data, cfg, runtime=TEST_RUNTIME)
    capped = mine_candidates(data, DistillConfig(**{**cfg.__dict__, "max_judged_queries": 20}), runtime=TEST_RUNTIME)
    assert capped["query_id"].nunique() == 20 < full["query_id"].nunique()
    assert set(capped["query_id"]) <= set(full["query_id"])  # a sample of the same queries, each with all its pairs
    for qid, rows in capped.groupby("query_id"):
        assert len(rows) == (full["query_id"] == qid).sum()
    again = mine_candidates(data, DistillConfig(**{**cfg.__dict__, "max_judged_queries": 20}), runtime=TEST_RUNTIME)
    assert set(again["query_id"]) == set(capped["query_id"])  # seeded
    with pytest.raises(Exception, match="max_judged_queries"):
        DistillConfig(max_judged_queries=0)


def test_mining_and_the_base_student_row_share_one_catalog_encode(esci_dir):
    """Mining's catalog encode is eval's base-student one when both name one model (see distill.mine)."""
    import dataclasses

    from reldistill.config import DataConfig
    from reldistill.data import load_esci
    from reldistill.recipe.distill import DistillConfig
    from reldistill.recipe.eval import EvalConfig
    from reldistill.recipe.retrieval import SearchConfig

    data_cfg = DataConfig(path=str(esci_dir))
    data, d = load_esci(data_cfg), DistillConfig(student="minilm-l6", eval_split="dev")
    same = sz.work_of(data, data_cfg, d, EvalConfig(base_student="minilm-l6"), SearchConfig())
    other = sz.work_of(data, data_cfg, d, EvalConfig(base_student="bge-small"), SearchConfig())
    no_mining = sz.work_of(data, data_cfg, dataclasses.replace(d, dense_depth=0, drop_near_duplicates=False),
                           EvalConfig(base_student="minilm-l6"), SearchConfig())
    assert (same.catalog_encodes, other.catalog_encodes, no_mining.catalog_encodes) == (1, 2, 1)


def test_the_teacher_probe_scores_lists_of_one_query_like_its_real_work(esci_dir):
    """The teacher's real work comes in a query's list of candidates (Task 1, judged and mined train pairs, rerank pools),
    whose template and query run once; the probe times such lists, not 24 pairs of 24 queries."""
    from reldistill.config import DataConfig
    from reldistill.data import load_esci

    data = load_esci(DataConfig(path=str(esci_dir)))
    train = data.examples[data.examples["split"] == "train"]
    q, t = sz.grouped_pairs(train, 2, 12)
    assert len(q) == len(t) == 24 and len(set(q)) == 2 and all(q.count(x) == 12 for x in set(q))
    assert sz.grouped_pairs(train, 2, 12) == (q, t)  # seeded
    texts = dict(zip(zip(train["query"], train["text"]), train["query_id"]))
    assert all((a, b) in texts for a, b in zip(q, t))  # real judged pairs
    few = train[train["query_id"].isin(train["query_id"].drop_duplicates().head(3))]
    small = few.groupby("query_id").size()
    q, _ = sz.grouped_pairs(few, 2, 10_000)  # no list that long: the two longest lists, whole
    assert len(q) == small.nlargest(2).sum() and len(set(q)) == 2


def test_bad_demo_settings_and_speeds_are_one_sentence():
    from reldistill.errors import UserError

    with pytest.raises(UserError, match="target_minutes"):
        sz.DemoConfig(target_minutes=0)
    with pytest.raises(UserError, match="min_student_steps"):
        sz.DemoConfig(min_student_steps=200)
    with pytest.raises(UserError, match="positive"):
        _plan(0.0, 1.0, 1.0)


def test_the_pipeline_sizes_from_the_probe_once_and_records_it(tmp_path, esci_dir, monkeypatch):
    import yaml

    from reldistill.workflow.pipeline import Pipeline

    recipe = yaml.safe_load(open("configs/demo-cpu.yaml"))
    recipe["data"]["path"] = str(esci_dir)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    calls = []

    def fake_measure(teacher_recipe, distill_cfg, data, demo, runtime=None):
        calls.append(demo)
        return sz.Speeds(6.0, 0.5, 80.0, 200.0, {"fake": True})

    monkeypatch.setattr(sz, "measure", fake_measure)
    pipe = Pipeline(path, tmp_path / "run")
    z = pipe.sizing["sizes"]
    assert len(calls) == 1 and calls[0].target_minutes == recipe["demo"]["target_minutes"]
    assert pipe._teacher_minutes() == z["teacher_minutes"]
    d = pipe._distill_cfg()
    assert (d.max_unlabeled_queries, d.max_steps) == (z["unlabeled_queries"], z["student_steps"])
    assert pipe._eval_cfg().dev_rerank_queries == z["dev_rerank_queries"]
    state = json.loads((tmp_path / "run" / "pipeline.json").read_text())
    assert state["sizing"]["sizes"] == z and state["sizing"]["speeds"]["teacher_pairs_per_s"] == 6.0
    assert state["sizing"]["work"]["catalog"] == 8462  # counted on the real sample
    again = Pipeline(path, tmp_path / "run")  # a resumed run keeps its sizes (and so its stage inputs)
    assert again.sizing["sizes"] == z and len(calls) == 1
    assert again.stage_inputs("teacher") == pipe.stage_inputs("teacher")
    other = Pipeline(path, tmp_path / "run", budget_minutes=30).sizing["sizes"]  # another target: sized again
    assert len(calls) == 2 and all(other[k] >= z[k] for k in z) and other != z
    no_demo = {k: v for k, v in recipe.items() if k != "demo"}
    path.write_text(yaml.safe_dump(no_demo))
    assert Pipeline(path, tmp_path / "run2").sizing is None  # recipes without demo: keep their own values
    assert len(calls) == 2


@pytest.mark.slow
def test_a_demo_recipe_runs_at_the_sizes_it_measured(tmp_path):
    """End to end on tiny models: the real probe measures, and the stages run at the sizes it chose."""
    import yaml

    from reldistill.artifacts import read_manifest
    from tests.builders.tiny_teacher import build_tiny_base
    from reldistill.workflow.pipeline import Pipeline
    from tests.teacher_testkit import one_thread
    from tests.distill_testkit import build_tiny_student, write_tiny_esci

    esci = write_tiny_esci(tmp_path / "esci")
    student = build_tiny_student(tmp_path / "student-base")
    cfg = {
        "data": {"path": str(esci), "dev_fraction": 0.2, "seed": 3},
        "teacher": {"model": str(build_tiny_base(tmp_path / "teacher-base")), "head_hidden": 16, "lora_r": 4,
                    "lora_alpha": 8, "max_length": 48},
        "train": {"lr": 1e-3, "epochs": 1, "batch_size": 8, "precision": "fp32", "log_every": 1},
        "score": {"batch_size": 16, "dtype": "float32", "shard_size": 32},
        "distill": {"student": str(student), "bm25_depth": 4, "dense_depth": 4, "unlabeled_depth": 2, "min_judged": 3,
                    "max_unlabeled_queries": 10, "batch_size": 4, "max_seq_length": 32, "epochs": 1,
                    "eval_split": "dev", "eval_base": False, "precision": "float32"},
        "search": {"rerank_k": 5},
        "eval": {"split": "test", "depth": 20, "base_student": str(student), "teacher_dtype": "float32",
                 "teacher_batch": 8, "batch_size": 16, "dev_rerank_queries": 6},
        "demo": {"target_minutes": 6, "min_teacher_minutes": 0.2, "max_teacher_minutes": 0.5, "min_student_steps": 2,
                 "max_student_steps": 3, "min_unlabeled_queries": 2, "min_dev_rerank_queries": 2, "overhead_s": 5,
                 "probe_seconds": 0.5},
    }
    path = tmp_path / "tiny-demo.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    with one_thread():
        pipe = Pipeline(path, tmp_path / "run")
        pipe.run_all()
    sizing = json.loads((tmp_path / "run" / "pipeline.json").read_text())["sizing"]
    z = sizing["sizes"]  # teacher_minutes: its training (between the min and max) + its dev evaluations
    trains = sizing["predicted_s"]["teacher training"]
    assert z["student_steps"] in (2, 3) and 12 <= trains <= 30 and 60 * z["teacher_minutes"] >= trains
    assert read_manifest(tmp_path / "run" / "student")["steps"] == z["student_steps"]
    assert read_manifest(tmp_path / "run" / "student-human")["steps"] == z["student_steps"]
    assert (tmp_path / "run" / "report.json").is_file()
