"""Write an ESCI-shaped data set of the full release's size from the sample's distributions (for scale tests).

    python scripts/make_esci_scale.py --out /tmp/esci-full            # 2.6M examples, 1.8M products
    python scripts/make_esci_scale.py --out /tmp/esci-s --examples 20000 --products 15000

Nothing here is real data: queries are sample queries with a drawn extra word, judged-pairs-per-query,
labels, splits and locales follow the sample's frequencies, and product text recombines sample titles
with drawn vocabulary (brand, colour, description, bullets and category are drawn from the sample's
values, nulls included). Both files are written in row groups through Arrow, so memory stays at one
chunk whatever the size. The output is not committed: generate it where it is needed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reldistill.data.esci import EXAMPLES_FILE, PRODUCTS_FILE

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "esci-sample"
CHUNK = 250_000
PRODUCT_COLUMNS = ("product_description", "product_bullet_point", "product_brand", "product_color", "product_category")


def product_id(idx: np.ndarray) -> list[str]:
    """Synthetic ASIN-like ids (10 characters, 'S' + 9 digits) for pool positions ``idx``."""
    return [f"S{i:09d}" for i in idx.tolist()]


def _draw(rng: np.random.Generator, values: np.ndarray, n: int) -> np.ndarray:
    return values[rng.integers(0, len(values), n)]


def write_products(out: Path, sample: pd.DataFrame, n: int, rng: np.random.Generator) -> None:
    titles = sample["product_title"].dropna().astype(str).to_numpy()
    vocab = np.unique(np.concatenate([t.split() for t in titles[:5000]]))
    locales = sample["product_locale"].to_numpy()
    writer = None
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        base, w1, w2 = _draw(rng, titles, m), _draw(rng, vocab, m), _draw(rng, vocab, m)
        cols = {"product_id": product_id(np.arange(start, start + m)),
                "product_title": [f"{b} {x} {y}" for b, x, y in zip(base.tolist(), w1.tolist(), w2.tolist())]}
        for c in PRODUCT_COLUMNS:
            cols[c] = _draw(rng, sample[c].to_numpy(dtype=object), m)
        cols["product_locale"] = _draw(rng, locales, m)
        table = pa.Table.from_pydict({k: pa.array(v, pa.string(), from_pandas=True) for k, v in cols.items()})
        writer = writer or pq.ParquetWriter(out / PRODUCTS_FILE, table.schema)
        writer.write_table(table)
    writer.close()


def write_examples(out: Path, sample: pd.DataFrame, n: int, n_products: int, rng: np.random.Generator) -> int:
    """Judged pairs in query blocks; returns the number of queries written.

    Each synthetic query copies a sample query's judged-pair count, split and small_version flag
    (drawn jointly, so test queries keep their own sizes), and its text plus one drawn query word.
    """
    firsts = sample.drop_duplicates("query_id").set_index("query_id")
    per_query = sample.groupby("query_id").size().reindex(firsts.index).to_numpy()
    queries = firsts["query"].astype(str).to_numpy()
    splits = firsts["split"].astype(str).to_numpy()
    smalls = firsts["small_version"].to_numpy(np.int64)
    labels = sample["esci_label"].to_numpy()
    words = np.unique(np.concatenate([q.split() for q in queries]))
    writer, written, qid = None, 0, 0
    while written < n:
        pick = rng.integers(0, len(queries), 1 + CHUNK // max(1, int(per_query.mean())))
        sizes = per_query[pick]
        keep = np.cumsum(sizes) <= n - written
        pick, sizes = (pick[keep], sizes[keep]) if keep.any() else (pick[:1], np.array([n - written]))
        rows = int(sizes.sum())
        nq = len(sizes)
        q_text = [f"{a} {b}" for a, b in zip(queries[pick].tolist(), _draw(rng, words, nq).tolist())]
        q_ids = np.arange(qid, qid + nq)
        q_split, q_small = splits[pick], smalls[pick]
        rep = np.repeat(np.arange(nq), sizes)
        table = pa.table({
            "example_id": pa.array(np.arange(written, written + rows), pa.int64()),
            "query": pa.array(np.asarray(q_text, dtype=object)[rep], pa.string()),
            "query_id": pa.array(q_ids[rep], pa.int64()),
            "product_id": pa.array(product_id(rng.integers(0, n_products, rows)), pa.string()),
            "product_locale": pa.array(np.full(rows, "us", dtype=object), pa.string()),
            "esci_label": pa.array(_draw(rng, labels, rows), pa.string()),
            "small_version": pa.array(q_small[rep], pa.int64()),
            "large_version": pa.array(np.ones(rows, np.int64), pa.int64()),
            "split": pa.array(q_split[rep], pa.string()),
        })
        writer = writer or pq.ParquetWriter(out / EXAMPLES_FILE, table.schema)
        writer.write_table(table)
        written += rows
        qid += nq
    writer.close()
    return qid


def _dedupe_pairs(out: Path) -> None:
    """Drop repeated (query_id, product_id) draws (rare: a few per million) so pairs are unique as in ESCI."""
    path = out / EXAMPLES_FILE
    table = pq.read_table(path, columns=["query_id", "product_id"])
    key = pd.DataFrame({"q": table["query_id"].to_numpy(), "p": table["product_id"].to_numpy(zero_copy_only=False)})
    dup = key.duplicated().to_numpy()
    del key
    if dup.any():
        full = pq.read_table(path).filter(pa.array(~dup))
        pq.write_table(full, path, row_group_size=CHUNK)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="directory to write the two parquet files to")
    ap.add_argument("--sample", type=Path, default=SAMPLE, help="the ESCI sample whose distributions are drawn from")
    ap.add_argument("--examples", type=int, default=2_600_000)
    ap.add_argument("--products", type=int, default=1_800_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.examples < 1 or a.products < 1:
        ap.error("--examples and --products must be positive")
    a.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    write_products(a.out, pd.read_parquet(a.sample / PRODUCTS_FILE), a.products, rng)
    t1 = time.perf_counter()
    nq = write_examples(a.out, pd.read_parquet(a.sample / EXAMPLES_FILE), a.examples, a.products, rng)
    _dedupe_pairs(a.out)
    t2 = time.perf_counter()
    n_ex = pq.ParquetFile(a.out / EXAMPLES_FILE).metadata.num_rows
    print(f"{a.products:,} products in {t1 - t0:.1f} s, {n_ex:,} examples over {nq:,} queries in {t2 - t1:.1f} s → {a.out}")


if __name__ == "__main__":
    main()
