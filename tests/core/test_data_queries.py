"""Query normalisation and query ids have one home (reldistill.data.queries); every stage uses it."""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import REPO
from reldistill.config import DataConfig
from reldistill.data import load_esci, normalise_queries, normalise_query, query_id, query_ids
from reldistill.distill.interchange import read_flag_jsonl
from reldistill.distill.scores import validate_scores
from reldistill.index.catalog import Catalog

TRICKY = ["Red Shoes", "  red   shoes ", "red\tshoes\n", "RED SHOES", "Ärger  Ünd", "usb-c 3.1", "", "x", "a  b  c",
          "\u00a0nbsp\u00a0query", "Straße"]


def _sample_queries() -> list[str]:
    return load_esci(DataConfig(path=str(REPO.parent / "shared" / "data" / "esci-sample"))).examples["query"].unique().tolist()


def test_one_rule_equals_the_rules_it_replaced():
    queries = TRICKY + _sample_queries()
    new = [normalise_query(q) for q in queries]
    # the rules the old call sites applied (retrieval.catalog, distill.mine._norm, distill.scores, distill.interchange)
    assert new == [" ".join(str(q).lower().split()) for q in queries]
    assert new == pd.Series(queries).astype(str).str.lower().str.split().str.join(" ").tolist()
    assert normalise_queries(pd.Series(queries)).tolist() == new
    assert normalise_queries(pd.Series(["A  b", None])).tolist() == ["a b", ""]


def test_query_ids_follow_the_normalised_text():
    ids = query_ids(pd.Series(TRICKY))
    assert ids.tolist() == [query_id(q) for q in TRICKY]
    assert len(set(ids[:4])) == 1 and len(set(ids)) == len({normalise_query(q) for q in TRICKY})
    assert query_id("Red Shoes", prefix="u:").startswith("u:") and query_id("red shoes").startswith("q")


def test_every_stage_gives_the_same_id_to_the_same_query(tmp_path):
    """A table without query ids, scores without them and FlagEmbedding lines without them agree."""
    table = tmp_path / "pairs.csv"
    pd.DataFrame({"query": ["Red  Shoes", "red shoes", "usb cable"], "product_id": ["P1", "P2", "P3"],
                  "title": ["red shoe", "red boot", "usb-c cable"], "label": ["E", "S", "E"]}).to_csv(table, index=False)
    ex = load_esci(DataConfig(path=str(table))).examples
    assert ex["query_id"].tolist() == [query_id("red shoes")] * 2 + [query_id("usb cable")]
    scores = validate_scores(pd.DataFrame({"query": ["RED shoes", "usb  cable"], "product_id": ["P1", "P3"],
                                           "teacher_score": [0.9, 0.8]}), {"P1", "P2", "P3"}, "scores")
    assert scores["query_id"].tolist() == [query_id("red shoes"), query_id("usb cable")]
    flag = tmp_path / "f.jsonl"
    flag.write_text(json.dumps({"query": "Red Shoes ", "pos": ["a"], "neg": ["b"], "pos_scores": [0.9], "neg_scores": [0.1]}) + "\n")
    assert set(read_flag_jsonl(flag)["query_id"]) == {query_id("red shoes")}
    cat = Catalog(pd.DataFrame({"product_id": ["P1"], "text": ["red shoe"]}),
                  pd.DataFrame({"query_id": ["1"], "query": ["Red  Shoes"], "product_id": ["P1"], "esci_label": ["E"]}))
    assert cat.label("red shoes", "P1") == "E" and cat.label(" RED SHOES", "P1") == "E"
