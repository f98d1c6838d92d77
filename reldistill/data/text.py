"""Product text: HTML stripped, whitespace collapsed, configurable fields, length cap."""

from __future__ import annotations

import html
import re

import pandas as pd

from reldistill.errors import UserError

# Short field names → ESCI product columns.
PRODUCT_FIELDS = {
    "title": "product_title",
    "brand": "product_brand",
    "color": "product_color",
    "bullets": "product_bullet_point",
    "description": "product_description",
    "category": "product_category",
}
_TAG = re.compile(r"<[^>]{0,500}>")
_SPACE = re.compile(r"\s+")


def clean_text(s: pd.Series) -> pd.Series:
    """Strip HTML tags and entities and collapse whitespace; missing values become ''."""
    s = s.astype("string").fillna("")
    s = s.str.replace(_TAG, " ", regex=True)
    s = s.map(html.unescape, na_action="ignore").astype("string")
    return s.str.replace(_SPACE, " ", regex=True).str.strip().fillna("")


def product_text(products: pd.DataFrame, fields: list[str], max_chars: int, where: str = "products") -> pd.Series:
    """Join the non-empty ``fields`` of each product with ' | ' and cap the result at ``max_chars``."""
    if not fields:
        raise UserError("data.text_fields is empty — name at least one of " + ", ".join(PRODUCT_FIELDS) + ".")
    parts = []
    for f in fields:
        col = PRODUCT_FIELDS.get(f, f)
        if col not in products.columns:
            raise UserError(f"{where} has no column {col!r} for text field {f!r} — fix data.text_fields.")
        parts.append(clean_text(products[col]))
    text = parts[0]
    for p in parts[1:]:
        sep = pd.Series(" | ", index=p.index, dtype="string").where((p != "") & (text != ""), "")
        text = text + sep + p
    return text.str.slice(0, max_chars).str.strip().astype(str)
