"""The data an evaluation reads: the examples with dev carved from train as the teacher and students carve it,
and one split's queries, judged pairs and qrels over the catalog they are searched in."""

from __future__ import annotations

import dataclasses

import pandas as pd

from reldistill.config import DataConfig
from reldistill.data import carve_dev, load_esci
from reldistill.errors import UserError

RunDict = dict[str, dict[str, float]]  # query id → product id → score: one system's ranked lists


@dataclasses.dataclass
class EvalInputs:
    """The split's queries, judged pairs and the catalog they are searched in."""

    query_ids: list[str]
    queries: list[str]
    judged: pd.DataFrame  # query_id, query, product_id, esci_label, soft_label, gain
    product_ids: list[str]
    texts: list[str]
    qrels: dict[str, dict[str, float]]

    @property
    def row_of(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.product_ids)}


def split_inputs(data, examples: pd.DataFrame, split: str, max_queries: int | None = None) -> EvalInputs:
    """``split`` of ``examples`` (optionally its first ``max_queries`` queries) with its qrels, over ``data``'s catalog."""
    part = examples[examples["split"] == split]
    qids = list(dict.fromkeys(part["query_id"]))
    if max_queries:
        qids = qids[:max_queries]
        part = part[part["query_id"].isin(qids)]
    first = part.drop_duplicates("query_id").set_index("query_id")["query"]
    qrels: dict[str, dict[str, float]] = {}
    for q, p, g in part[["query_id", "product_id", "gain"]].itertuples(index=False):
        qrels.setdefault(q, {})[p] = float(g)
    products = data.products
    return EvalInputs(qids, [str(first[q]) for q in qids], part.reset_index(drop=True),
                      products["product_id"].astype(str).tolist(), products["text"].astype(str).tolist(), qrels)


def load_data(data_cfg: DataConfig):
    """(EsciData, its examples with the dev split carved from train exactly as teacher and students carve it)."""
    data = load_esci(data_cfg)
    examples = data.examples.copy()
    examples["split"] = carve_dev(examples, data_cfg.dev_fraction, data_cfg.seed)
    return data, examples


def checked_split(data, examples: pd.DataFrame, split: str, max_queries: int | None = None) -> EvalInputs:
    """``split_inputs``, or one UserError naming the splits the data has when it has none of ``split``."""
    if not (examples["split"] == split).any():
        have = ", ".join(sorted(examples["split"].unique()))
        raise UserError(f"{data.source} has no examples in split {split!r} (splits: {have}) — pass --split with one of those.")
    return split_inputs(data, examples, split, max_queries)
