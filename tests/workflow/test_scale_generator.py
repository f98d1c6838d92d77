"""scripts/make_esci_scale.py writes an ESCI-shaped set the data layer loads (small scale here; full scale: scripts/scale_run.py)."""

from __future__ import annotations

import pandas as pd

from tests.conftest import load_script


def _generator():
    return load_script("make_esci_scale")


def test_small_scale_set_loads_and_follows_the_sample(esci_dir, tmp_path):
    from reldistill.config import DataConfig
    from reldistill.data import data_stats, load_esci
    from reldistill.data.esci import EXAMPLES_FILE, PRODUCTS_FILE

    gen = _generator()
    gen.main(["--out", str(tmp_path), "--sample", str(esci_dir), "--examples", "6000", "--products", "4000", "--seed", "1"])
    ex = pd.read_parquet(tmp_path / EXAMPLES_FILE)
    sample = pd.read_parquet(esci_dir / EXAMPLES_FILE)
    assert list(ex.columns) == list(sample.columns)
    assert 5900 <= len(ex) <= 6000 and not ex.duplicated(["query_id", "product_id"]).any()
    assert list(pd.read_parquet(tmp_path / PRODUCTS_FILE).columns) == list(pd.read_parquet(esci_dir / PRODUCTS_FILE).columns)
    data = load_esci(DataConfig(path=str(tmp_path)))
    assert len(data.products) == 4000 and len(data.examples) == len(ex)  # every judged product is in the catalog
    stats = data_stats(data)
    share = data.examples["esci_label"].value_counts(normalize=True)
    ref = sample["esci_label"].value_counts(normalize=True)
    assert (share - ref).abs().max() < 0.05, (share, ref)
    assert set(stats["splits"]) == {"train", "test"}
