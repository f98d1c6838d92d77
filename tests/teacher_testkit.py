"""Shared helpers for the teacher tests: a tiny random Llama base, a tiny judged-pairs table, recipes."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import pandas as pd

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
WORDS = ["shoes", "tea", "cable", "mug", "lamp", "bag", "watch", "pen", "chair", "desk", "sock", "hat"]


@contextlib.contextmanager
def one_thread():
    """Tiny models run far faster on one thread when the CPU is shared."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def write_pairs_table(path: Path, queries: int = 16, per_query: int = 5, seed: int = 0) -> Path:
    """A judged-pairs CSV (query, label, product_title, split) the data layer reads as a generic table."""
    rng = random.Random(seed)
    rows = []
    for qi in range(queries):
        q = f"{WORDS[qi % len(WORDS)]} {rng.choice(['red', 'blue', 'big', 'small'])}"
        for pi in range(per_query):
            rows.append(dict(query_id=f"q{qi}", query=q, product_id=f"p{qi}_{pi}",
                             product_title=f"{rng.choice(WORDS)} {rng.choice(WORDS)} item {pi}",
                             label=rng.choice("ESCI"), split="test" if qi >= queries - 3 else "train"))
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_recipe(path: Path, base: Path, data: Path, **train) -> Path:
    """A tiny-teacher recipe YAML; ``train`` overrides train: keys."""
    import yaml

    tr = dict(lr=1e-3, epochs=2, batch_size=4, grad_accum=2, precision="fp32", select_best=False, log_every=1)
    tr.update(train)
    recipe = {
        "data": {"path": str(data), "dev_fraction": 0.2, "seed": 1},
        "teacher": {"model": str(base), "head_hidden": 16, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.05,
                    "max_length": 48},
        "train": tr,
    }
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, **ONE_THREAD, **extra}


def esci_title_pairs(esci_dir: Path, n: int) -> tuple[list[str], list[str]]:
    """The first ``n`` (query, product title) pairs of the real ESCI sample's US examples."""
    ex = pd.read_parquet(esci_dir / "shopping_queries_dataset_examples.parquet", columns=["query", "product_id", "product_locale"])
    pr = pd.read_parquet(esci_dir / "shopping_queries_dataset_products.parquet", columns=["product_id", "product_title"])
    ex = ex[ex["product_locale"] == "us"].merge(pr, on="product_id").head(n)
    return ex["query"].tolist(), ex["product_title"].astype(str).tolist()


def tiny_teacher_dir(tmp_path_factory, name: str, seed: int) -> Path:
    """A tiny random teacher artifact in a fresh temporary folder (module-scoped fixtures share it)."""
    from tests.builders.tiny_teacher import build_tiny_teacher

    return build_tiny_teacher(tmp_path_factory.mktemp(name) / "teacher", seed=seed)
