"""scripts/scale_run.py's pieces: per-stage measurement, the stand-in encoder, recall against flat, the table."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml

from reldistill.recipe.retrieval import IndexConfig
from tests.conftest import REPO, load_script
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def scale():
    return load_script("scale_run")


@pytest.mark.slow
def test_a_stage_reports_its_own_peak_memory_and_exit_code(scale, tmp_path):
    ballast = np.ones(400 * 2**20 // 8)  # a big caller (as a test session is): a stage must not report its memory
    grab = "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum())"
    big = scale.run_stage("big", [sys.executable, "-c", grab], tmp_path)
    small = scale.run_stage("small", [sys.executable, "-c", "print(1)"], tmp_path, nice=0)
    assert ballast.sum() > 0 and big["rc"] == 0 and big["peak_rss_gib"] >= 300 / 1024 > small["peak_rss_gib"]
    assert big["peak_rss_gib"] < (300 + 400) / 1024
    assert big["wall_s"] >= 0 and big["cpu_s"] >= 0 and "-c" in big["command"]
    assert (tmp_path / "big.out").read_text().strip() == str(float(300 * 2**20 // 8))
    assert scale.run_stage("fails", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path)["rc"] == 3 and not big["stopped"]


def test_a_stage_over_its_time_is_stopped_and_marked(scale, tmp_path):
    rec = scale.run_stage("slow", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, nice=0, timeout_s=1)
    assert rec["stopped"] and rec["rc"] == -15 and 1 <= rec["wall_s"] < 30
    assert "stopped at" in scale.markdown({"cpu": {"model": "m", "cpus": "2", "simd_flags": []}, "stages": [rec]})


def test_recall_counts_the_exact_top_k_found(scale):
    mod = scale
    exact = [["a", "b", "c", "d"], ["e", "f"], []]
    assert mod.recall_at_k(exact, exact, 4) == 1.0
    assert mod.recall_at_k([["a", "x", "c", "y"], ["f", "z"], ["q"]], exact, 4) == pytest.approx((0.5 + 0.5) / 2)
    assert mod.recall_at_k([["b", "a"], ["e"]], exact[:2], 2) == pytest.approx((1.0 + 0.5) / 2)


@pytest.mark.slow
def test_measured_recall_of_approximate_indexes_on_a_small_catalog(scale):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 48))
    doc = centres[rng.integers(0, 40, 3000)] + 0.3 * rng.normal(size=(3000, 48))
    doc = (doc / np.linalg.norm(doc, axis=1, keepdims=True)).astype(np.float32)
    qv = doc[rng.integers(0, 3000, 60)] + 0.05 * rng.normal(size=(60, 48)).astype(np.float32)
    qv = (qv / np.linalg.norm(qv, axis=1, keepdims=True)).astype(np.float32)
    icfg = IndexConfig(hnsw_m=8, hnsw_ef_construction=40, hnsw_ef_search=16, ivf_nlist=64, ivf_nprobe=4, pq_m=12)
    rows = scale.measure_recall(doc, [f"p{i}" for i in range(3000)], qv, icfg, {"hnsw": [4, 128], "ivfpq": [1, 64]})
    by = {(r["kind"], r["setting"]): r for r in rows}
    assert by[("flat", "exact")]["recall@10"] == 1.0 and by[("flat", "exact")]["p50_vs_flat"] == 1.0
    assert [r["setting"] for r in rows if r["recipe"]] == ["exact", "ef_search=16", "nprobe=4"]
    assert 0 < by[("hnsw", "ef_search=4")]["recall@10"] <= by[("hnsw", "ef_search=128")]["recall@10"] <= 1
    assert by[("hnsw", "ef_search=128")]["recall@10"] > 0.9
    # nprobe = every list searches the whole catalog: only PQ's compression loses neighbours
    assert by[("ivfpq", "nprobe=1")]["recall@10"] < by[("ivfpq", "nprobe=64")]["recall@10"] < 1
    # the refine rows (index.ivf_refine): the PQ shortlist re-scored finds more, for more memory than PQ codes alone
    for refine in ("sq8", "flat"):
        row = by[(f"ivfpq + {refine} refine ×4", "nprobe=64")]
        assert row["recall@10"] > by[("ivfpq", "nprobe=64")]["recall@10"] and not row["recipe"]
        assert row["index_mib"] > by[("ivfpq", "nprobe=64")]["index_mib"]
    assert by[("ivfpq + flat refine ×4", "nprobe=64")]["index_mib"] > by[("ivfpq + sq8 refine ×4", "nprobe=64")]["index_mib"]
    assert all(r["p50_ms"] > 0 and r["batch_qps"] > 0 for r in rows)


@pytest.fixture(scope="module")
def standin(scale, tmp_path_factory):
    from tests.builders.tiny_student import build_tiny_student

    root = tmp_path_factory.mktemp("standin")
    build_tiny_student(root / "tiny", dim=32)
    return scale.build_standin(root / "standin", base=str(root / "tiny" / "hf"), dim=12)


def test_standin_encoder_is_a_static_embedding_student_the_project_loads(scale, standin, tmp_path):
    from reldistill.student import encode_documents, encode_queries, load_student
    from reldistill.student.encode import set_max_seq_length

    model = load_student(str(standin), backend="torch", runtime=TEST_RUNTIME)
    set_max_seq_length(model, 64)  # static embeddings have no sequence cap: a no-op, not an error
    docs = encode_documents(model, ["red running shoes", "blue kettle", "red running shoes"])
    assert docs.shape == (3, 12) and np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-5)
    assert np.allclose(docs[0], docs[2]) and not np.allclose(docs[0], docs[1])
    assert np.allclose(encode_queries(model, ["blue kettle"])[0], docs[1], atol=1e-6)
    with pytest.raises(SystemExit, match="standin-dim"):
        scale.build_standin(tmp_path / "bad", base=str(standin.parent / "tiny" / "hf"), dim=33)


@pytest.mark.slow
def test_mining_runs_with_a_static_embedding_student(standin, esci_dir):
    from reldistill.config import DataConfig
    from reldistill.data import load_esci
    from reldistill.recipe.distill import DistillConfig
    from reldistill.distill.mine import mine_candidates

    cfg = DistillConfig(student=str(standin), bm25_depth=0, dense_depth=3, unlabeled_depth=1, max_unlabeled_queries=5,
                        max_seq_length=32, drop_near_duplicates=False)
    cands = mine_candidates(load_esci(DataConfig(path=str(esci_dir))), cfg, runtime=TEST_RUNTIME)
    dense = cands[cands["source"] == "dense"]
    assert len(dense) > 0 and set(cands["split"]) == {"train"}
    assert dense.groupby("query_id").size().max() <= 3


def test_ivf_trains_on_a_seeded_sample_capped_per_list():
    from reldistill.index.dense import IVF_TRAIN_PER_LIST, ivf_training_sample

    vecs = np.arange(5000 * 4, dtype=np.float32).reshape(5000, 4)
    assert ivf_training_sample(vecs, 5000 // IVF_TRAIN_PER_LIST + 1) is vecs  # under the cap: every row
    sample = ivf_training_sample(vecs, 10)
    assert sample.shape == (IVF_TRAIN_PER_LIST * 10, 4) and len(np.unique(sample[:, 0])) == len(sample)
    assert np.isin(sample[:, 0], vecs[:, 0]).all() and np.array_equal(sample, ivf_training_sample(vecs, 10))


def test_the_scale_recipe_points_mining_and_data_at_the_run(scale, tmp_path):
    recipe = yaml.safe_load(scale.write_recipe(tmp_path, tmp_path / "data", tmp_path / "standin").read_text())
    demo = yaml.safe_load((REPO / "configs" / "demo-cpu.yaml").read_text())
    assert recipe["data"]["path"] == str(tmp_path / "data") and recipe["distill"]["student"] == str(tmp_path / "standin")
    assert recipe["index"] == demo["index"] and recipe["student"]["backend"] == "torch"


def test_the_table_holds_every_stage_and_recall_row(scale):
    result = {
        "cpu": {"model": "Test CPU", "cpus": "2", "simd_flags": ["avx2"]},
        "stages": [
            {"stage": "data stats", "command": "reldistill data stats --json", "wall_s": 3.0, "cpu_s": 2.5,
             "peak_rss_gib": 1.25, "load_avg_1m_before": 2.0, "output": {"pairs": 2600000, "queries": 700000, "products": 1800000}},
            {"stage": "bm25 (all products, batched queries)", "command": "python x bm25", "wall_s": 5.0, "cpu_s": 4.0,
             "peak_rss_gib": 1.0, "load_avg_1m_before": 1.0,
             "output": {"products": 1800000, "terms": 10, "postings": 34000000, "build_s": 81.0, "queries": 30000,
                        "batched_ms_per_query": 3.9, "baseline_queries": 300, "bm25s_retrieve_ms_per_query": 81.8,
                        "speedup": 21.0, "same_top5_scores": "300/300"}},
            {"stage": "recall vs flat (sample, real student)", "command": "python x recall", "wall_s": 9.0, "cpu_s": 9.0,
             "peak_rss_gib": 0.5, "load_avg_1m_before": 1.0,
             "output": {"products": 10, "queries": 2, "student": "m@1", "backend": "torch", "dim": 4, "rows": [
                 {"kind": "hnsw", "setting": "ef_search=64", "recipe": True, "recall@10": 0.97, "p50_ms": 0.2,
                  "p99_ms": 0.4, "p50_vs_flat": 0.5, "batch_qps": 1000.0, "build_s": 1.0}]}},
        ],
    }
    md = scale.markdown(result)
    assert "2,600,000 judged pairs" in md and "1,800,000 products" in md and "Test CPU" in md
    assert "| data stats | 3.0 s | 2.5 s | 1.25 GiB | 2.0 | `reldistill data stats --json` |" in md
    assert "| hnsw | ef_search=64 * | 0.9700 |" in md
    assert "3.90 ms/query against bm25s's per-query retrieve 81.80 ms/query on the first 300 (same process: 21.0×)" in md


def test_the_catalog_reads_only_the_columns_it_uses(esci_dir):
    """At 1.8M products descriptions and bullet points dominate memory: read them only when text_fields names them."""
    from reldistill.config import DataConfig
    from reldistill.data import load_esci

    lean = load_esci(DataConfig(path=str(esci_dir), text_fields=["title", "color"])).products
    assert set(lean.columns) == {"product_id", "product_title", "product_brand", "product_color", "text"}
    full = load_esci(DataConfig(path=str(esci_dir), text_fields=["title", "description"])).products
    assert "product_description" in full.columns and "product_bullet_point" not in full.columns
    assert (lean["product_id"] == full["product_id"]).all()


def test_the_bm25_stage_times_batched_search_against_bm25s_retrieve(scale, esci_dir, tmp_path, capsys):
    recipe = scale.write_recipe(tmp_path, esci_dir, tmp_path / "standin")
    scale.main(["bm25", "--config", str(recipe), "--queries", "300", "--baseline", "60"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["queries"] == 300 and out["baseline_queries"] == 60 and out["products"] > 8000
    assert out["same_top5_scores"] == "60/60"  # the batched search returns bm25s's scores
    assert out["batched_ms_per_query"] > 0 and out["bm25s_retrieve_ms_per_query"] > 0 and out["build_s"] > 0
