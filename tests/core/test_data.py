"""ESCI data layer: loading the real sample, generic tables, splits, and bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from reldistill.config import DataConfig
from reldistill.data import carve_dev, clean_text, load_esci
from reldistill.data.esci import EXAMPLES_FILE, PRODUCTS_FILE
from reldistill.errors import UserError


@pytest.fixture(scope="module")
def sample(esci_dir):
    return load_esci(DataConfig(path=str(esci_dir)))


def test_sample_counts(sample):
    ex = sample.examples
    assert len(ex) == 6651
    assert ex["query_id"].nunique() == 1806
    assert len(sample.products) == 8462
    assert ex.groupby("split")["query_id"].nunique().to_dict() == {"test": 30, "train": 1776}
    assert ex["esci_label"].value_counts().to_dict() == {"E": 3545, "S": 1823, "I": 1002, "C": 281}
    assert (ex["text"].str.len() > 0).all()


def test_labels_and_gains_mapped(sample):
    ex = sample.examples
    for lab, soft, gain in [("E", 1.0, 1.0), ("S", 0.5, 0.1), ("C", 0.0, 0.01), ("I", 0.0, 0.0)]:
        rows = ex[ex["esci_label"] == lab]
        assert set(rows["soft_label"]) == {soft} and set(rows["gain"]) == {gain}


def test_custom_label_maps(esci_dir):
    cfg = DataConfig(path=str(esci_dir), soft_labels={"E": 1.0, "S": 0.7, "C": 0.2, "I": 0.0},
                     gains={"E": 3.0, "S": 2.0, "C": 1.0, "I": 0.0})
    ex = load_esci(cfg).examples
    assert set(ex.loc[ex.esci_label == "S", "soft_label"]) == {0.7}
    assert set(ex.loc[ex.esci_label == "C", "gain"]) == {1.0}


def test_split_is_by_query(sample):
    sides = sample.examples.groupby("query_id")["split"].nunique()
    assert (sides == 1).all()
    dev = carve_dev(sample.examples, 0.15, seed=13)
    per_q = pd.DataFrame({"q": sample.examples["query_id"], "s": dev}).groupby("q")["s"].nunique()
    assert (per_q == 1).all()
    assert set(dev[sample.examples["split"] == "test"]) == {"test"}  # test untouched
    assert 0.08 < (dev == "dev").sum() / (sample.examples["split"] == "train").sum() < 0.25


def _judged(examples: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """Per query: its split and its judged count."""
    return pd.DataFrame({"q": examples["query_id"], "s": split}).groupby("q").agg(s=("s", "first"), n=("s", "size"))


@pytest.mark.parametrize("fraction", [0.15, 0.3])
def test_dev_carve_is_stratified_by_judged_count(sample, fraction):
    ex = sample.examples
    per_q = _judged(ex, carve_dev(ex, fraction, seed=13))
    train_side = per_q[per_q["s"].isin(["train", "dev"])]
    for lo, hi in [(1, 2), (2, 5), (5, 10), (10, 10**9)]:  # each stratum gives dev its share, to one query
        band = train_side[(train_side["n"] >= lo) & (train_side["n"] < hi)]
        assert abs((band["s"] == "dev").sum() - fraction * len(band)) <= 0.5 + 1e-9, (lo, hi)
    # the choice depends on query ids, not on row order
    shuffled = ex.sample(frac=1.0, random_state=0)
    again = _judged(shuffled, carve_dev(shuffled, fraction, seed=13))
    assert again["s"].sort_index().equals(per_q["s"].sort_index())
    assert not per_q["s"].equals(_judged(ex, carve_dev(ex, fraction, seed=14))["s"])  # the seed moves it


def test_extended_dev_can_choose(extended_dir):
    """esci-extended's default carve: >= 60 whole multi-judged dev queries, test untouched and never in dev."""
    data = load_esci(DataConfig(path=str(extended_dir)))
    ex = data.examples
    split = carve_dev(ex, DataConfig().dev_fraction, DataConfig().seed)
    per_q = _judged(ex, split)
    assert ((per_q["s"] == "dev") & (per_q["n"] >= 2)).sum() >= 60
    assert (split[ex["split"] == "test"] == "test").all() and ex.loc[ex["split"] == "test", "query_id"].nunique() == 130
    assert (ex.groupby("query_id")["split"].nunique() == 1).all()


def test_hashed_split_without_column(tmp_path, sample):
    ex = sample.examples.drop(columns=["split"]).rename(columns={"esci_label": "label", "text": "product_title"})
    f = tmp_path / "pairs.parquet"
    ex[["query", "label", "product_title", "product_id"]].to_parquet(f)
    a = load_esci(DataConfig(path=str(f), seed=1)).examples
    b = load_esci(DataConfig(path=str(f), seed=1)).examples
    assert (a["split"] == b["split"]).all()  # deterministic
    assert (a.groupby("query_id")["split"].nunique() == 1).all()
    frac = a.drop_duplicates("query_id")["split"].eq("test").mean()
    assert 0.10 < frac < 0.20


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_generic_table(tmp_path, suffix):
    df = pd.DataFrame({
        "query": ["red shoes", "red shoes", "usb cable"],
        "title": ["Red <b>running</b> shoes", "Blue hat", "USB-C cable &amp; charger"],
        "brand": ["Acme", "", "Cord"],
        "label": ["E", "I", "exact"],
    })
    f = tmp_path / f"pairs{suffix}"
    {".csv": lambda: df.to_csv(f, index=False), ".jsonl": lambda: df.to_json(f, orient="records", lines=True),
     ".parquet": lambda: df.to_parquet(f)}[suffix]()
    data = load_esci(DataConfig(path=str(f)))
    ex = data.examples
    assert len(ex) == 3 and ex["query_id"].nunique() == 2
    assert ex["text"].tolist()[0] == "Red running shoes | Acme"
    assert ex["text"].tolist()[2] == "USB-C cable & charger | Cord"
    assert ex["esci_label"].tolist() == ["E", "I", "E"]


def test_clean_text_strips_html():
    s = clean_text(pd.Series(["<p>Soft&nbsp;cotton</p>\n<ul><li>2 pack</li></ul>", None]))
    assert s.tolist() == ["Soft cotton 2 pack", ""]


def test_length_cap(esci_dir):
    data = load_esci(DataConfig(path=str(esci_dir), text_fields=["title", "bullets", "description"], max_text_chars=64))
    assert data.products["text"].str.len().max() <= 64


def _copy_sample(esci_dir, tmp_path, edit_examples=None, edit_products=None):
    ex = pd.read_parquet(esci_dir / EXAMPLES_FILE)
    pr = pd.read_parquet(esci_dir / PRODUCTS_FILE)
    if edit_examples:
        ex = edit_examples(ex)
    if edit_products:
        pr = edit_products(pr)
    ex.to_parquet(tmp_path / EXAMPLES_FILE)
    pr.to_parquet(tmp_path / PRODUCTS_FILE)
    return tmp_path


def test_empty_text_rows_dropped_and_counted(esci_dir, tmp_path):
    def blank(pr):
        pid = "B07NCQWCQS"
        pr.loc[pr.product_id == pid, ["product_title", "product_brand", "product_color"]] = None
        return pr
    d = _copy_sample(esci_dir, tmp_path, edit_products=blank)
    data = load_esci(DataConfig(path=str(d)))
    assert data.dropped_empty_text == 1
    assert len(data.examples) == 6651 - 1
    assert "B07NCQWCQS" not in set(data.products.product_id)


BAD_CASES = {
    "missing column": (lambda ex: ex.drop(columns=["esci_label"]), None, ["esci_label", EXAMPLES_FILE]),
    "unknown label": (lambda ex: ex.assign(esci_label=ex.esci_label.where(ex.index != 5, "X")), None, ["unknown label 'X'", "esci_label"]),
    "empty query": (lambda ex: ex.assign(query=ex["query"].where(ex.index != 3, "  ")), None, ["empty query", "query"]),
    "missing product": (None, lambda pr: pr[pr.product_id != "B07NCQWCQS"], ["B07NCQWCQS", "not in the products file"]),
    "duplicate product": (None, lambda pr: pd.concat([pr, pr.iloc[:1]]), ["more than once", PRODUCTS_FILE]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_esci_input_is_one_clear_error(esci_dir, tmp_path, case, cli):
    edit_ex, edit_pr, needles = BAD_CASES[case]
    d = _copy_sample(esci_dir, tmp_path, edit_ex, edit_pr)
    with pytest.raises(UserError) as e:
        load_esci(DataConfig(path=str(d)))
    msg = str(e.value)
    for n in needles:
        assert n in msg
    proc = cli("data", "stats", "--data", d, "--json")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and needles[0] in " ".join(proc.stderr.split())


@pytest.mark.slow
def test_missing_files(tmp_path, cli):
    proc = cli("data", "stats", "--data", tmp_path / "nope")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "d").mkdir()
    proc = cli("data", "stats", "--data", tmp_path / "d")
    assert proc.returncode == 2 and EXAMPLES_FILE in proc.stderr.replace("\n", "")


def test_truncated_parquet(esci_dir, tmp_path):
    d = _copy_sample(esci_dir, tmp_path)
    raw = (d / EXAMPLES_FILE).read_bytes()
    (d / EXAMPLES_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="parquet|truncated"):
        load_esci(DataConfig(path=str(d)))


def test_non_utf8_csv(tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_bytes("query,title,label\ncaf\xe9,Coffee,E\n".encode("latin-1"))
    with pytest.raises(UserError, match="UTF-8"):
        load_esci(DataConfig(path=str(f)))


def test_table_missing_label_column(tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("query,title\nshoes,Red shoes\n")
    with pytest.raises(UserError, match="'label'"):
        load_esci(DataConfig(path=str(f)))


def test_config_validation():
    with pytest.raises(UserError, match="dev_fraction"):
        DataConfig(dev_fraction=1.5)
    from reldistill.config import from_dict
    with pytest.raises(UserError, match="unknown key"):
        from_dict(DataConfig, {"pathh": "x"}, "data")
    with pytest.raises(UserError, match="data.max_text_chars"):
        from_dict(DataConfig, {"max_text_chars": "many"}, "data")
    assert from_dict(DataConfig, {"max_text_chars": 100, "locale": None}, "data").locale is None
