"""scripts/teacher_variants.py: the one-axis ablations change one axis of the demo recipe each, and their table
compares every ablation with the demo recipe over the same dev queries; teacher/metrics.per_query_ndcg is what
mean_ndcg averages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from tests.conftest import REPO, load_script


def _flat(recipe: dict) -> dict:
    return {f"{sec}.{k}": v for sec in ("data", "teacher", "train") for k, v in recipe[sec].items()}


def test_each_ablation_changes_only_its_axis_of_the_demo_recipe():
    mod = load_script("teacher_variants")
    base = yaml.safe_load((REPO / "configs" / "demo-cpu.yaml").read_text())
    ref = _flat(mod.recipe_for(base, "ablate-demo"))
    assert ref["train.epochs"] == 0.5 and ref["train.max_minutes"] is None and ref["teacher.head"] == "lm"
    expected = {"ablate-untrained": {"train.max_steps": 0}, "ablate-bce": {"train.loss": "bce"},
                "ablate-listwise": {"train.bce_weight": 0.0}, "ablate-smollm2": {"teacher.model": "smollm2-135m"},
                "ablate-mlp-head": {"teacher.head": "mlp", "teacher.template": mod.LM_TEMPLATE},
                "ablate-qv": {"teacher.target_modules": ["q_proj", "v_proj"]}, "ablate-lr-high": {"train.lr": 6.0e-4},
                "ablate-lr-low": {"train.lr": 6.7e-5}, "ablate-top4": {"train.train_layers": 4}}
    assert sorted(expected) == sorted(k for k in mod.VARIANTS if k.startswith("ablate-") and k != "ablate-demo")
    for name, axis in expected.items():
        got = _flat(mod.recipe_for(base, name))
        changed = {k: got.get(k) for k in set(got) | set(ref) if got.get(k) != ref.get(k)}
        assert changed == axis, name


def _row(name: str, per_query: dict[str, float], test: float, log=((0, 0.65), (169, 0.66))) -> dict:
    return {"variant": name, "dev_per_query": per_query, "test_ndcg10": test, "test_queries": 130, "chosen_step": 169,
            "dev_log": [list(x) for x in log], "train_wall_min": 15.2, "epochs": 0.5, "cpu": "Some CPU",
            "cpu_flags": ["avx2", "fma"], "precision": "fp32", "threads": 2}


def test_the_ablation_table_pairs_each_variant_with_the_demo_recipe_on_the_same_dev_queries():
    mod = load_script("teacher_variants")
    rng = np.random.default_rng(0)
    base = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0.3, 0.9, 60))}
    better = {q: min(1.0, v + 0.1) for q, v in base.items()}
    same = dict(base)
    same.pop("q0")  # a query the variant lacks is left out of the pairing
    rows = {"ablate-demo": _row("ablate-demo", base, 0.60), "ablate-qv": _row("ablate-qv", same, 0.58),
            "ablate-bce": _row("ablate-bce", better, 0.63), "lm-zeroshot:x": {"variant": "lm-zeroshot:x"}}
    lines = {ln.split(" | ")[0][2:]: ln for ln in mod.ablation_table(rows).splitlines() if ln.startswith("| ablate-")}
    assert sorted(lines) == ["ablate-bce", "ablate-demo", "ablate-qv"]
    assert "| – | 0.6000 (130) | – |" in lines["ablate-demo"] and "0: 0.6500, 169: 0.6600" in lines["ablate-demo"]
    assert "+0.0000 (p 1.00, 59)" in lines["ablate-qv"] and "| -0.0200 |" in lines["ablate-qv"]
    delta = np.mean([better[q] - base[q] for q in base])
    assert f"{delta:+.4f} (p 0.00, 60)" in lines["ablate-bce"] and "| +0.0300 |" in lines["ablate-bce"]
    assert "Some CPU (avx2, fma), fp32, 2 threads" in mod.ablation_table(rows)
    assert mod.ablation_table({"ablate-qv": rows["ablate-qv"]}) == ""  # nothing to pair with


def test_mean_ndcg_is_the_mean_of_the_per_query_values_of_rankable_queries():
    from reldistill.teacher.metrics import mean_ndcg, per_query_ndcg

    df = pd.DataFrame({"query_id": ["a", "a", "a", "b", "c", "c"], "teacher_score": [0.9, 0.1, 0.5, 0.7, 0.2, 0.3],
                       "gain": [1.0, 0.0, 0.1, 1.0, 0.0, 0.0]})
    pq = per_query_ndcg(df, k=10)
    assert list(pq) == ["a"]  # b: one judged candidate; c: no positive gain
    assert pq["a"] == 1.0
    df.loc[0, "teacher_score"] = 0.0  # the Exact product now last
    pq = per_query_ndcg(df, k=10)
    assert 0 < pq["a"] < 1 and mean_ndcg(df, k=10) == (pq["a"], 1)
