"""Product metadata served with results (title, brand, color, text) and the judged labels of known queries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reldistill.artifacts import write_parquet
from reldistill.data.esci import DISPLAY_COLUMNS
from reldistill.data.queries import normalise_query
from reldistill.errors import UserError

PRODUCTS_FILE = "products.parquet"
JUDGEMENTS_FILE = "judgements.parquet"
META_COLUMNS = DISPLAY_COLUMNS  # the data layer loads them beside the text fields


class Catalog:
    """Products by id (``get``/``add``/``remove``) plus ESCI labels by (normalised query, product id)."""

    def __init__(self, products: pd.DataFrame, judgements: pd.DataFrame | None = None):
        if "product_id" not in products.columns or "text" not in products.columns:
            raise UserError("the products table needs 'product_id' and 'text' columns.")
        products = products.copy()
        products["product_id"] = products["product_id"].astype(str)
        if products["product_id"].duplicated().any():
            dup = products.loc[products["product_id"].duplicated(), "product_id"].iloc[0]
            raise UserError(f"product_id {dup!r} appears more than once in the catalog — product ids must be unique.")
        keep = ["product_id", *[c for c in META_COLUMNS if c in products.columns], "text"]
        self._rows: dict[str, dict] = {r["product_id"]: r for r in products[keep].to_dict("records")}
        self.labels: dict[str, dict[str, str]] = {}
        self.query_ids: dict[str, str] = {}
        if judgements is not None and len(judgements):
            for qid, q, pid, lab in judgements[["query_id", "query", "product_id", "esci_label"]].itertuples(index=False):
                key = normalise_query(q)
                self.labels.setdefault(key, {})[str(pid)] = str(lab)
                self.query_ids.setdefault(key, str(qid))

    @classmethod
    def from_data(cls, products: pd.DataFrame, examples: pd.DataFrame | None) -> Catalog:
        return cls(products, examples)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, product_id: str) -> bool:
        return str(product_id) in self._rows

    def get(self, product_id: str) -> dict | None:
        row = self._rows.get(str(product_id))
        if row is None:
            return None
        return {"product_id": row["product_id"], "title": _s(row.get("product_title")) or row["text"][:200],
                "brand": _s(row.get("product_brand")), "color": _s(row.get("product_color")), "text": row["text"]}

    def text(self, product_id: str) -> str:
        return self._rows[str(product_id)]["text"]

    def label(self, query: str, product_id: str) -> str | None:
        """E/S/C/I when ``query`` is a judged query and ``product_id`` was judged for it."""
        return self.labels.get(normalise_query(query), {}).get(str(product_id))

    def is_judged(self, query: str) -> bool:
        return normalise_query(query) in self.labels

    def example_queries(self, n: int = 8) -> list[str]:
        """Up to ``n`` judged queries with the most judged products (for the web page's examples)."""
        best = sorted(self.labels.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [q for q, _ in best[:n]]

    def add(self, rows: pd.DataFrame) -> None:
        for r in rows.to_dict("records"):
            r["product_id"] = str(r["product_id"])
            self._rows[r["product_id"]] = r

    def remove(self, product_ids) -> None:
        for p in product_ids:
            self._rows.pop(str(p), None)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self._rows.values()))

    def judgements_frame(self) -> pd.DataFrame:
        rows = [(self.query_ids[q], q, p, lab) for q, d in self.labels.items() for p, lab in d.items()]
        return pd.DataFrame(rows, columns=["query_id", "query", "product_id", "esci_label"])

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        write_parquet(d / PRODUCTS_FILE, self.frame())
        write_parquet(d / JUDGEMENTS_FILE, self.judgements_frame())

    @classmethod
    def load(cls, directory: str | Path) -> Catalog:
        d = Path(directory)
        try:
            products = pd.read_parquet(d / PRODUCTS_FILE)
            judged = pd.read_parquet(d / JUDGEMENTS_FILE) if (d / JUDGEMENTS_FILE).is_file() else None
        except FileNotFoundError:
            raise UserError(f"{d / PRODUCTS_FILE} is missing — rebuild the index with `reldistill index build`.") from None
        except Exception:  # noqa: BLE001 - unreadable parquet
            raise UserError(f"the product table in {d} is unreadable (corrupted) — rebuild the index.") from None
        return cls(products, judged)


def _s(v) -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)
