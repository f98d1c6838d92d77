"""`distill export` → FlagEmbedding JSONL + a sentence-transformers Margin-MSE dataset; `distill train` reads both.

Contracts checked: FlagEmbedding's embedder fine-tuning data (``AbsEmbedderTrainDataset``: loaded with
``datasets.load_dataset('json')``; ``pos``/``neg`` lists, a random ``pos`` and ``train_group_size - 1``
sampled ``neg`` per item, so both must be non-empty; with knowledge distillation ``pos_scores`` /
``neg_scores`` columns are required and every score must be a number — FlagOpen/FlagEmbedding,
FlagEmbedding/abc/finetune/embedder/AbsDataset.py) and sentence-transformers' ``MarginMSELoss`` input
``(query, positive, negative)`` with ``label = M(q, pos) − M(q, neg)``.
"""

from __future__ import annotations

import json
import random

import pytest

from reldistill.distill.mine import mine_candidates, with_dev_split
from reldistill.distill.train import training_rows
from tests.conftest import assert_user_error, run_cli
from tests.distill_testkit import fake_scores, tiny, tiny_cfg  # noqa: F401 - tiny is a fixture
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def exported(tiny):
    """A run with stand-in teacher scores of mined candidates (tiny ESCI), exported by `distill export`."""
    from reldistill.recipe.distill import DistillConfig

    cands = mine_candidates(tiny["data"], tiny_cfg(tiny), dev_fraction=0.2, seed=3, runtime=TEST_RUNTIME)
    run = tiny["root"] / "interchange-run"
    (run / "scores").mkdir(parents=True)
    fake_scores(cands).to_parquet(run / "scores" / "scores.parquet", index=False)
    recipe = tiny["root"] / "interchange.yaml"
    recipe.write_text(json.dumps({"data": {"path": tiny["data_cfg"].path, "dev_fraction": 0.2, "seed": 3},
                                  "distill": {"student": tiny["student"], "batch_size": 4, "max_steps": 2, "max_seq_length": 32}}))
    proc = run_cli("distill", "export", "--config", recipe, "--run", run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"run": run, "recipe": recipe, "data": tiny["data"], "examples": with_dev_split(tiny["data"], 0.2, 3),
            "cfg": lambda **kw: DistillConfig(**{"student": tiny["student"], "batch_size": 4, "max_steps": 2, "max_seq_length": 32, **kw}),
            "flag": run / "export" / "flagembedding.jsonl", "st": run / "export" / "margin-mse"}


def test_flagembedding_jsonl_parses_as_flagembedding_reads_it(exported):
    from datasets import load_dataset

    lines = [json.loads(x) for x in exported["flag"].read_text(encoding="utf-8").splitlines()]
    assert len(lines) >= 5
    for line in lines:
        assert isinstance(line["query"], str) and line["query"]
        for key in ("pos", "neg"):
            texts, scores = line[key], line[f"{key}_scores"]
            assert isinstance(texts, list) and texts and all(isinstance(t, str) and t for t in texts)
            assert len(scores) == len(texts) and all(isinstance(s, float) and 0 <= s <= 1 for s in scores)
        assert min(line["pos_scores"]) >= 0 and len(line["pos"]) + len(line["neg"]) >= 2
    ds = load_dataset("json", data_files=str(exported["flag"]), split="train")
    assert len(ds) == len(lines)
    assert {"query", "pos", "neg", "pos_scores", "neg_scores"} <= set(ds.column_names)  # knowledge_distillation needs both
    rng = random.Random(0)
    for item in ds:  # AbsEmbedderTrainDataset.__getitem__ with train_group_size 8
        pos_idx = rng.choice(range(len(item["pos"])))
        neg_idx = rng.sample(list(range(len(item["neg"]))) * 8, 7)
        teacher = [item["pos_scores"][pos_idx]] + [item["neg_scores"][i] for i in neg_idx]
        assert all(isinstance(s, (int, float)) for s in teacher)


@pytest.mark.parametrize("loss,mnrl", [("margin-mse", 0.0), ("margin-mse", 0.5), ("kl", 0.0)])
def test_training_rows_from_jsonl_equal_rows_from_parquet(exported, loss, mnrl):
    cfg = exported["cfg"](loss=loss, mnrl_weight=mnrl)
    from_parquet, _ = training_rows(exported["run"] / "scores" / "scores.parquet", cfg, exported["data"], exported["examples"])
    from_jsonl, _ = training_rows(exported["flag"], cfg, exported["data"], exported["examples"])
    assert from_parquet == from_jsonl
    assert len(from_parquet["distill"]["label"]) > 10


def test_margin_mse_dataset_loads_with_datasets_and_matches(exported):
    from datasets import load_from_disk

    cfg = exported["cfg"](loss="margin-mse", mnrl_weight=0.0)
    ds = load_from_disk(str(exported["st"]))
    assert ds.column_names == ["query", "positive", "negative", "label"]
    rows, _ = training_rows(exported["run"] / "scores" / "scores.parquet", cfg, exported["data"], exported["examples"])
    d = rows["distill"]
    assert ds["query"] == d["query"] and ds["positive"] == d["doc_a"] and ds["negative"] == d["doc_b"]
    assert ds["label"] == pytest.approx(d["label"]) and min(ds["label"]) > 0  # positive first: margins are positive
    st_rows, _ = training_rows(exported["st"], cfg, exported["data"], exported["examples"])
    assert st_rows == rows


@pytest.mark.slow
def test_distill_train_accepts_the_exports(exported, cli):
    for name, src in (("student-flag", exported["flag"]), ("student-st", exported["st"])):
        proc = cli("distill", "train", "--config", exported["recipe"], "--run", exported["run"], "--scores", src,
                   "--output", exported["run"] / name)
        assert proc.returncode == 0, proc.stderr[-3000:]
        m = json.loads((exported["run"] / name / "manifest.json").read_text())
        assert m["scores"]["path"] == str(src.resolve()) and m["steps"] == 2
    bad = exported["run"] / "bad.jsonl"
    bad.write_text('{"query": "x", "pos": ["a"]}\n')
    proc = cli("distill", "train", "--config", exported["recipe"], "--run", exported["run"], "--scores", bad)
    assert_user_error(proc, "has no 'neg'")
