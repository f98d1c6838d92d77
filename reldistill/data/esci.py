"""Load judged query–product pairs (official ESCI layout or a generic table) and the product catalog.

The official release has 2.6M examples and 1.8M products, so files are read through Arrow datasets
with column projection and predicate push-down (locale, small_version); only the filtered rows
become pandas frames.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from reldistill.config import DataConfig
from reldistill.data.queries import query_ids, stable_id
from reldistill.data.split import assign_splits
from reldistill.data.text import PRODUCT_FIELDS, product_text
from reldistill.errors import UserError
from reldistill.labels import map_labels, normalise_labels

log = logging.getLogger(__name__)

EXAMPLES_FILE = "shopping_queries_dataset_examples.parquet"
PRODUCTS_FILE = "shopping_queries_dataset_products.parquet"
EXAMPLE_COLUMNS = ["query_id", "query", "product_id", "esci_label"]
TABLE_SUFFIXES = {".csv", ".jsonl", ".json", ".parquet"}
# Product columns kept beside the text fields (search results show them). Descriptions and bullet points
# are read only when data.text_fields names them: at 1.8M products they are most of the catalog's bytes.
DISPLAY_COLUMNS = ("product_title", "product_brand", "product_color")


@dataclasses.dataclass
class EsciData:
    """Judged pairs joined to product text, plus the product catalog they are judged against.

    ``examples``: query_id, query, product_id, esci_label, soft_label, gain, split, text.
    ``products``: product_id, the product columns of ``text_fields`` and ``DISPLAY_COLUMNS`` present, and ``text``.
    """

    examples: pd.DataFrame
    products: pd.DataFrame
    source: str
    dropped_empty_text: int = 0

    def split(self, name: str) -> pd.DataFrame:
        """Examples of one split."""
        return self.examples[self.examples["split"] == name]

    def qrels(self, split: str) -> dict[str, dict[str, float]]:
        """{query_id: {product_id: gain}} for one split (ESCI gains)."""
        out: dict[str, dict[str, float]] = {}
        for q, p, g in self.split(split)[["query_id", "product_id", "gain"]].itertuples(index=False):
            out.setdefault(str(q), {})[str(p)] = float(g)
        return out


def _dataset(path: Path, what: str) -> ds.Dataset:
    if not path.exists():
        raise UserError(f"{what} file {path} does not exist — point --data at an ESCI directory holding it.")
    try:
        fmt = "parquet" if path.suffix == ".parquet" or path.is_dir() else None
        return ds.dataset(str(path), format=fmt or "parquet")
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{what} file {path} is not a readable parquet file ({str(e).splitlines()[0][:120]}).") from None


def _require(schema: pa.Schema, cols: list[str], path: Path) -> None:
    missing = [c for c in cols if c not in schema.names]
    if missing:
        raise UserError(f"{path} has no column {missing[0]!r} (columns: {', '.join(schema.names)}) — fix the file or its header.")


def _read(dset: ds.Dataset, cols: list[str], flt, path: Path) -> pd.DataFrame:
    try:
        return dset.to_table(columns=cols, filter=flt).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
        raise UserError(f"{path} could not be read ({str(e).splitlines()[0][:160]}) — is it truncated or mistyped?") from None


def _ids(values: pd.Series, column: str, where: str) -> pd.Series:
    """``values`` as strings; a null or blank id is one UserError (never the string 'nan' merging rows into one)."""
    text = values.astype("string")
    bad = text.isna() | (text.str.strip() == "")
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{where} has an empty {column} in {int(bad.sum())} row(s) (first at data row {first + 1}) — "
                        "fill or drop those rows; rows without an id cannot be told apart.")
    return text.astype(str)


def load_products(cfg: DataConfig, product_ids: set[str] | None = None, path: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The product catalog (locale-filtered, optionally restricted to ``product_ids``) with a ``text`` column.

    Returns the frame and the ids of products dropped because their text is empty.
    """
    path = path or Path(cfg.path) / PRODUCTS_FILE
    dset = _dataset(path, "products")
    _require(dset.schema, ["product_id"], path)
    wanted = [PRODUCT_FIELDS.get(f, f) for f in cfg.text_fields] + list(DISPLAY_COLUMNS)
    cols = ["product_id"] + [c for c in dict.fromkeys(wanted) if c in dset.schema.names and c != "product_id"]
    flt = None
    if cfg.locale and "product_locale" in dset.schema.names:
        flt = pc.field("product_locale") == cfg.locale
    if product_ids is not None:
        cond = pc.field("product_id").isin(pa.array(sorted(product_ids), pa.string()))
        flt = cond if flt is None else flt & cond
    df = _read(dset, cols, flt, path)
    df["product_id"] = _ids(df["product_id"], "product_id", str(path))
    dups = df["product_id"].duplicated()
    if dups.any():
        raise UserError(f"{path} lists product_id {df.loc[dups, 'product_id'].iloc[0]!r} more than once — product ids must be unique.")
    df["text"] = product_text(df, cfg.text_fields, cfg.max_text_chars, where=str(path))
    empty = df["text"] == ""
    if empty.any():
        log.warning("%s: dropped %d product(s) with empty text", path, int(empty.sum()))
    return df[~empty].reset_index(drop=True), df.loc[empty, "product_id"].tolist()


def _finish(examples: pd.DataFrame, products: pd.DataFrame, cfg: DataConfig, where: str, source: str, dropped_ids: list[str]) -> EsciData:
    """Validate queries/labels, join product text, assign splits."""
    examples = examples.copy()
    examples["query"] = examples["query"].astype("string").str.strip()
    empty_q = examples["query"].isna() | (examples["query"] == "")
    if empty_q.any():
        raise UserError(f"{where} has an empty query in column 'query' ({int(empty_q.sum())} row(s)) — drop or fill those rows.")
    examples["query"] = examples["query"].astype(str)
    examples["query_id"] = _ids(examples["query_id"], "query_id", where)
    examples["product_id"] = _ids(examples["product_id"], "product_id", where)
    examples["esci_label"] = normalise_labels(examples["esci_label"], cfg.soft_labels, f"{where} column 'esci_label'")
    examples["soft_label"] = map_labels(examples["esci_label"], cfg.soft_labels, where)
    examples["gain"] = map_labels(examples["esci_label"], cfg.gains, where)
    examples["split"] = assign_splits(examples, cfg.test_fraction, cfg.seed)
    text = products.set_index("product_id")["text"]
    known = examples["product_id"].isin(text.index)
    absent = ~known & ~examples["product_id"].isin(dropped_ids)
    if absent.any():
        missing = examples.loc[absent, "product_id"].iloc[0]
        raise UserError(f"{where}: product_id {missing!r} ({int(absent.sum())} example(s)) is not in the products file — add the products or drop those examples.")
    dropped_pairs = int((~known).sum())
    if dropped_pairs:
        log.warning("%s: dropped %d example(s) whose product has empty text", where, dropped_pairs)
    examples = examples[known].reset_index(drop=True)
    examples["text"] = examples["product_id"].map(text).astype(str)
    cols = ["query_id", "query", "product_id", "esci_label", "soft_label", "gain", "split", "text"]
    return EsciData(examples[cols], products, source, dropped_empty_text=len(dropped_ids))


def check_data_path(cfg: DataConfig) -> None:
    """One sentence when ``cfg.path`` names no ESCI directory and no table file (before anything reads it)."""
    root = Path(cfg.path)
    if root.suffix.lower() in TABLE_SUFFIXES:
        if not root.is_file():
            raise UserError(f"data file {root} does not exist — pass an existing CSV, JSONL or parquet file.")
    elif not root.is_dir():
        raise UserError(f"data path {root} does not exist — pass an ESCI directory or a CSV/JSONL/parquet table.")


def load_esci(cfg: DataConfig) -> EsciData:
    """Load an ESCI-layout directory or a generic table (CSV/JSONL/parquet), depending on ``cfg.path``."""
    check_data_path(cfg)
    root = Path(cfg.path)
    if root.suffix.lower() in TABLE_SUFFIXES:
        return load_table(cfg)
    ex_path = root / EXAMPLES_FILE
    dset = _dataset(ex_path, "examples")
    _require(dset.schema, EXAMPLE_COLUMNS, ex_path)
    flt = None
    if cfg.locale and "product_locale" in dset.schema.names:
        flt = pc.field("product_locale") == cfg.locale
    if cfg.small_version:
        _require(dset.schema, ["small_version"], ex_path)
        cond = pc.field("small_version") == 1
        flt = cond if flt is None else flt & cond
    cols = EXAMPLE_COLUMNS + (["split"] if "split" in dset.schema.names else [])
    examples = _read(dset, cols, flt, ex_path)
    if examples.empty:
        raise UserError(f"{ex_path} has no examples for locale {cfg.locale!r} — check data.locale.")
    products, dropped = load_products(cfg)
    return _finish(examples, products, cfg, str(ex_path), str(root), dropped)


def _read_table(path: Path) -> pd.DataFrame:
    """The table at ``path`` (its existence checked by `check_data_path`), or one sentence when it cannot be parsed."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        return pd.read_parquet(path)
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text — re-save it as UTF-8.") from None
    except (ValueError, pa.ArrowInvalid, OSError, pd.errors.ParserError) as e:
        raise UserError(f"{path} could not be parsed as {suffix[1:]} ({str(e).splitlines()[0][:120]}) — is it truncated?") from None


def load_table(cfg: DataConfig) -> EsciData:
    """A generic table: columns ``query``, ``label`` (E/S/C/I), and ``product_id`` and/or product text columns.

    Optional: ``query_id``, ``split``, and any of product_title/title, product_brand/brand, ... With
    ``data.products_path`` the products come from that ESCI-style products file instead.
    """
    path = Path(cfg.path)
    df = _read_table(path)
    df = df.rename(columns={c: "product_" + c for c in ("title", "brand", "color", "description", "bullet_point") if c in df.columns and "product_" + c not in df.columns})
    if "esci_label" not in df.columns and "label" in df.columns:
        df = df.rename(columns={"label": "esci_label"})
    for col in ("query", "esci_label"):
        if col not in df.columns:
            shown = "label" if col == "esci_label" else col
            raise UserError(f"{path} has no column {shown!r} (columns: {', '.join(map(str, df.columns))}) — add it.")
    if df.empty:
        raise UserError(f"{path} has no rows.")
    if "query_id" not in df.columns:
        df["query_id"] = query_ids(df["query"])
    if cfg.products_path:
        if "product_id" not in df.columns:
            raise UserError(f"{path} has no column 'product_id', which data.products_path requires — add it.")
        products, dropped = load_products(cfg, path=Path(cfg.products_path))
        return _finish(df, products, cfg, str(path), str(path), dropped)
    text_cols = [c for c in PRODUCT_FIELDS.values() if c in df.columns]
    if not text_cols and "text" not in df.columns:
        raise UserError(f"{path} has neither product text columns (product_title, ...) nor data.products_path — add a 'product_title' column.")
    if "product_id" not in df.columns:
        basis = df[text_cols].astype("string").fillna("").agg("|".join, axis=1) if text_cols else df["text"]
        df["product_id"] = basis.astype(str).map(lambda v: stable_id(v, "p"))
    df["product_id"] = _ids(df["product_id"], "product_id", str(path))
    prod = df.drop_duplicates("product_id").copy()
    if "text" in prod.columns and not text_cols:
        prod["product_title"] = prod["text"]
        fields = ["title"]
    else:
        fields = [f for f in cfg.text_fields if PRODUCT_FIELDS.get(f, f) in prod.columns] or ["title"]
    prod = prod[["product_id"] + [c for c in PRODUCT_FIELDS.values() if c in prod.columns]].reset_index(drop=True)
    prod["text"] = product_text(prod, fields, cfg.max_text_chars, where=str(path))
    empty = prod["text"] == ""
    products = prod[~empty].reset_index(drop=True)
    cols = ["query_id", "query", "product_id", "esci_label"] + (["split"] if "split" in df.columns else [])
    return _finish(df[cols], products, cfg, str(path), str(path), prod.loc[empty, "product_id"].tolist())
