"""The tiny ESCI world that the distillation, student, run-layout and pipeline tests share: an 80-product
ESCI-layout folder, a tiny normalised student, the `tiny` fixture over both, a distill config and stand-in
teacher scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reldistill.config import DataConfig
from reldistill.data import EXAMPLES_FILE, PRODUCTS_FILE, load_esci
from reldistill.recipe.distill import DistillConfig
from tests.builders.tiny_student import build_tiny_student as build_student

COLOURS = ["red", "blue", "green", "black", "white", "pink", "grey", "brown"]
THINGS = ["shoe", "shirt", "lamp", "mug", "sofa", "phone case", "backpack", "watch", "kettle", "pillow"]


def write_tiny_esci(root: Path) -> Path:
    """An ESCI-layout directory: 80 products, 14 fully judged + 10 single-pair train queries, 4 test queries."""
    root.mkdir(parents=True, exist_ok=True)
    prods = [{"product_id": f"P{i:03d}", "product_title": f"{COLOURS[i % 8]} {THINGS[i % 10]} model {i}",
              "product_brand": f"brand{i % 5}", "product_color": COLOURS[i % 8], "product_locale": "us"}
             for i in range(80)]
    pd.DataFrame(prods).to_parquet(root / PRODUCTS_FILE, index=False)
    rng = np.random.default_rng(0)
    rows = []
    for q in range(28):
        thing, colour = THINGS[q % 10], COLOURS[q % 8]
        query = f"{colour} {thing} {q}" if q >= 4 else f"{colour} {thing}"
        split = "test" if q < 4 else "train"
        n = 1 if 18 <= q else 6
        match = [p for p in prods if thing in p["product_title"]]
        picks = rng.choice(len(prods), size=n, replace=False) if n > 1 else [prods.index(match[q % len(match)])]
        for j, i in enumerate(picks):
            label = "E" if thing in prods[i]["product_title"] or j == 0 else rng.choice(["S", "C", "I"])
            rows.append({"query_id": str(q), "query": query, "product_id": prods[i]["product_id"],
                         "esci_label": label, "product_locale": "us", "split": split})
    pd.DataFrame(rows).to_parquet(root / EXAMPLES_FILE, index=False)
    return root


def build_tiny_student(out_dir: Path, dim: int = 32) -> Path:
    """A tiny random, normalised sentence-transformers student (see tests.builders.tiny_student)."""
    return build_student(out_dir, dim=dim, max_seq_length=32, normalize=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny ESCI folder, its data config (dev 0.2, seed 3), the loaded data and a tiny student."""
    root = tmp_path_factory.mktemp("distill")
    esci = write_tiny_esci(root / "esci")
    student = build_tiny_student(root / "student")
    data_cfg = DataConfig(path=str(esci), dev_fraction=0.2, seed=3)
    return {"root": root, "data_cfg": data_cfg, "data": load_esci(data_cfg), "student": str(student)}


def tiny_cfg(tiny, **kw) -> DistillConfig:
    """A distill config for ``tiny`` that mines and trains in seconds; ``kw`` overrides its fields."""
    base = dict(student=tiny["student"], bm25_depth=4, dense_depth=4, unlabeled_depth=2, min_judged=3,
                max_unlabeled_queries=None, batch_size=4, max_steps=2, max_seq_length=32, eval_split="dev")
    return DistillConfig(**{**base, **kw})


def fake_scores(cands: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Stand-in teacher scores: soft label (jittered) where judged, a low random score where mined."""
    rng = np.random.default_rng(seed)
    out = cands.copy()
    judged = out["soft_label"].notna()
    out["teacher_score"] = np.where(judged, 0.1 + 0.8 * out["soft_label"].fillna(0), 0.05) + rng.uniform(0, 0.1, len(out))
    return out
