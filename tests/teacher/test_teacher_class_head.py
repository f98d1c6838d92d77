"""scripts/teacher_class_head.py: the class-head measurement on a tiny teacher and the real ESCI sample, and the rule
its page states (a head is built only where dev shows it beats the shipped maps)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import load_script
from tests.teacher_testkit import tiny_teacher_dir


def _row(name: str, e: tuple[float, float, float], task1: float) -> dict:
    return {"variant": name, "p_exact": {"log_loss": e[0], "delta_vs_shipped": e[1], "se": e[2]},
            "p_exact_or_substitute": {"log_loss": 0.45, "delta_vs_shipped": 0.0, "se": 0.01},
            "task2_micro_f1": 0.5, "task3_substitute_f1": 0.4, "task1_ndcg10": task1, "task1_queries": 60}


def _result(*heads: dict) -> dict:
    return {"teacher": "runs/demo/teacher", "bundled": True, "dtype": "float32", "hidden_size": 640, "train_pairs": 100,
            "dev_pairs": 50, "dev_queries": 20, "ranked_dev_pairs": 40, "ranked_dev_queries": 8, "folds": 5, "draws": 10,
            "rows": [_row("shipped", (0.64, 0.0, 0.0), 0.75), *heads]}


PROV = {"command": "teacher_class_head.py --teacher runs/demo/teacher", "commit": "abc1234def", "cpu": "Some CPU", "cores": 2}


def test_the_page_builds_a_head_only_where_dev_shows_it_beats_the_shipped_maps():
    mod = load_script("teacher_class_head")
    within_noise = _row("head A", (0.63, -0.01, 0.006), 0.74)  # lower, but by less than two SEs
    page = mod.page(_result(within_noise), PROV)
    assert page.startswith("# A 4-way ESCI class head on the teacher: measured on dev, not built")
    assert "No head meets it" in page and "`python scripts/teacher_class_head.py --teacher runs/demo/teacher`" in page
    assert "abc1234def" in page and "Some CPU (2 CPUs)" in page and "(the bundled teacher, as the demo installs it)" in page

    clear = _row("head B", (0.60, -0.04, 0.01), 0.74)  # lower by four SEs
    page = mod.page(_result(within_noise, clear), PROV)
    assert "not built" not in page.splitlines()[0] and "Met by: head B." in page
    ranks_better = _row("head C", (0.66, 0.02, 0.01), 0.76)
    assert "Met by: head C." in mod.page(_result(ranks_better), PROV)


@pytest.mark.slow
def test_the_measurement_compares_each_head_with_the_shipped_map_on_dev_only(tmp_path_factory, tmp_path, esci_dir, capsys):
    mod = load_script("teacher_class_head")
    teacher = tiny_teacher_dir(tmp_path_factory, "class-head", seed=3)
    docs = tmp_path / "teacher-class-head.md"
    splits, states = [], mod.pooled_states
    mod.pooled_states = lambda t, df, batch=32: (splits.append(set(df["split"])), states(t, df, batch))[1]
    assert mod.main(["--teacher", str(teacher), "--data", str(esci_dir), "--dtype", "float32", "--docs", str(docs)]) == 0
    result = json.loads(docs.with_suffix(".json").read_text())
    shipped, heads = result["rows"][0], result["rows"][1:]
    assert shipped["p_exact"]["delta_vs_shipped"] == 0 and shipped["p_exact"]["se"] == 0
    assert len(heads) == len(mod.GRID_C) + 2
    for row in result["rows"]:
        for target in ("p_exact", "p_exact_or_substitute"):
            assert 0 < row[target]["log_loss"] < 5 and row[target]["se"] >= 0
            assert np.isclose(row[target]["log_loss"] - shipped[target]["log_loss"], row[target]["delta_vs_shipped"], atol=2e-5)
        assert 0 <= row["task2_micro_f1"] <= 1 and 0 <= row["task3_substitute_f1"] <= 1
        assert row["task1_queries"] == shipped["task1_queries"] > 0
    assert result["dev_pairs"] > result["ranked_dev_pairs"] > 0 and result["train_pairs"] > result["dev_pairs"]
    assert splits == [{"train"}, {"dev"}]  # the test split is never scored
    page = docs.read_text()
    assert page in capsys.readouterr().out
    assert all(f"| {r['variant']} | {r['p_exact']['log_loss']:.4f}" in page for r in result["rows"])


def test_the_committed_page_is_rendered_from_its_committed_figures():
    """docs/teacher-class-head.md is the script's rendering of docs/teacher-class-head.json, never typed."""
    from tests.readme_testkit import DOCS

    mod = load_script("teacher_class_head")
    result = json.loads((DOCS / "teacher-class-head.json").read_text())
    assert (DOCS / "teacher-class-head.md").read_text() == mod.page(result, result["provenance"])
    assert {"command", "commit", "cpu", "cores"} <= set(result["provenance"])
