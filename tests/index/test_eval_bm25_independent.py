"""BM25 full-catalog nDCG@10 from `reldistill eval` vs an independent bm25s + ranx computation.

The independent side reads the ESCI parquet files with pandas only (no reldistill code), builds
title + brand + color text, indexes it with bm25s and scores with ranx. Run this file directly to print
both numbers: `python tests/test_eval_bm25_independent.py [ESCI_DIR]`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


def independent_bm25_ndcg10(esci_dir: Path, split: str = "test") -> tuple[float, int]:
    """(mean nDCG@10, number of queries) of BM25 over the whole US catalog, ESCI gains ×100 for ranx."""
    import bm25s
    import pandas as pd
    from ranx import Qrels, Run, evaluate

    ex = pd.read_parquet(esci_dir / "shopping_queries_dataset_examples.parquet")
    pr = pd.read_parquet(esci_dir / "shopping_queries_dataset_products.parquet")
    ex = ex[(ex["product_locale"] == "us") & (ex["split"] == split)]
    pr = pr[pr["product_locale"] == "us"].reset_index(drop=True)
    text = (pr["product_title"].fillna("") + " " + pr["product_brand"].fillna("") + " " + pr["product_color"].fillna(""))
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(text.tolist(), stopwords="en", show_progress=False), show_progress=False)
    gain = {"E": 100, "S": 10, "C": 1, "I": 0}  # ESCI gains 1 / 0.1 / 0.01 / 0, as integers
    qrels = {}
    for q, p, lab in ex[["query_id", "product_id", "esci_label"]].itertuples(index=False):
        qrels.setdefault(str(q), {})[str(p)] = gain[lab]
    queries = ex.drop_duplicates("query_id")
    docs, scores = retriever.retrieve(bm25s.tokenize(queries["query"].tolist(), stopwords="en", show_progress=False),
                                      k=100, show_progress=False)
    ids = pr["product_id"].astype(str).to_numpy()
    run = {str(q): {ids[d]: float(s) for d, s in zip(drow, srow) if s > 0}
           for q, drow, srow in zip(queries["query_id"], docs, scores)}
    return float(evaluate(Qrels.from_dict(qrels), Run.from_dict(run), "ndcg@10", make_comparable=True)), len(qrels)


@pytest.mark.slow
def test_eval_bm25_matches_independent_computation(cli, esci_dir, tmp_path):
    proc = cli("eval", "--run", tmp_path, "--data", esci_dir, "--systems", "bm25", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads(proc.stdout)
    theirs, n = independent_bm25_ndcg10(esci_dir)
    assert ours["n_queries"] == n == 30
    assert abs(ours["systems"]["bm25"]["nDCG@10"] - theirs) <= 0.03, (ours["systems"]["bm25"]["nDCG@10"], theirs)


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "shared" / "data" / "esci-sample"
    value, n = independent_bm25_ndcg10(root)
    print(f"independent BM25 (bm25s + ranx, title+brand+color) full-catalog nDCG@10 on {n} test queries: {value:.4f}")
