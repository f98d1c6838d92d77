"""Rows with a null product (or query) id are one clear error: they never become the string 'nan' merged into one product."""

from __future__ import annotations

import pandas as pd
import pytest

from reldistill.config import DataConfig
from reldistill.data import load_esci
from reldistill.data.esci import EXAMPLES_FILE, PRODUCTS_FILE
from reldistill.errors import UserError
from tests.conftest import assert_user_error

PAIRS = pd.DataFrame({
    "query": ["red shoes", "red shoes", "usb cable", "usb cable"],
    "product_id": ["B1", None, None, "B4"],
    "title": ["Red running shoes", "Blue hat", "USB-C cable", "Lamp"],
    "label": ["E", "I", "E", "I"],
})


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_null_product_ids_in_a_table_are_refused(tmp_path, suffix, cli):
    f = tmp_path / f"pairs{suffix}"
    {".csv": lambda: PAIRS.to_csv(f, index=False), ".jsonl": lambda: PAIRS.to_json(f, orient="records", lines=True),
     ".parquet": lambda: PAIRS.to_parquet(f)}[suffix]()
    with pytest.raises(UserError, match=r"empty product_id in 2 row\(s\) \(first at data row 2\)"):
        load_esci(DataConfig(path=str(f)))
    if suffix == ".csv":
        assert_user_error(cli("data", "stats", "--data", f), str(f), "empty product_id")


def test_a_blank_product_id_is_refused_too(tmp_path):
    f = tmp_path / "pairs.csv"
    PAIRS.assign(product_id=["B1", "B2", "  ", "B4"]).to_csv(f, index=False)
    with pytest.raises(UserError, match="empty product_id in 1 row"):
        load_esci(DataConfig(path=str(f)))


def test_tables_with_every_id_still_load(tmp_path):
    f = tmp_path / "pairs.csv"
    PAIRS.assign(product_id=["B1", "B2", "B3", "B4"]).to_csv(f, index=False)
    data = load_esci(DataConfig(path=str(f)))
    assert sorted(data.products["product_id"]) == ["B1", "B2", "B3", "B4"]


def test_null_ids_in_the_esci_layout_are_refused(esci_dir, tmp_path):
    ex = pd.read_parquet(esci_dir / EXAMPLES_FILE).head(200)
    pr = pd.read_parquet(esci_dir / PRODUCTS_FILE)
    pr = pr[pr["product_id"].isin(set(ex["product_id"]))]
    for name, (examples, products, nulls) in {"products": (ex, pr, 2), "examples": (ex, pr, 3)}.items():
        bad = (products if name == "products" else examples).copy()
        bad.loc[bad.index[:nulls], "product_id"] = None
        d = tmp_path / name
        d.mkdir()
        (bad if name == "examples" else examples).to_parquet(d / EXAMPLES_FILE, index=False)
        (bad if name == "products" else products).to_parquet(d / PRODUCTS_FILE, index=False)
        with pytest.raises(UserError, match=f"empty product_id in {nulls} row"):
            load_esci(DataConfig(path=str(d)))
