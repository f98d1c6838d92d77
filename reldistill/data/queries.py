"""Query normalisation and query ids: one rule for every stage (mining, scores, interchange, eval, search).

Two queries are the same when they are equal after lower-casing and collapsing whitespace; a query
without an id gets ``<prefix>`` + a 12-hex-digit BLAKE2b digest of its normalised text.
"""

from __future__ import annotations

import hashlib

import pandas as pd


def normalise_query(query: object) -> str:
    """``query`` lower-cased with runs of whitespace collapsed to one space (and trimmed)."""
    return " ".join(str(query).lower().split())


def normalise_queries(queries: pd.Series) -> pd.Series:
    """``normalise_query`` over a column (vectorised; missing values count as empty queries)."""
    return queries.astype("string").fillna("").astype(str).str.lower().str.split().str.join(" ")


def stable_id(text: str, prefix: str) -> str:
    """``prefix`` + a 12-hex-digit BLAKE2b digest of ``text`` (ids for rows that have none)."""
    return prefix + hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def query_id(query: object, prefix: str = "q") -> str:
    """A stable id for a query that has none: ``prefix`` + digest of its normalised text."""
    return stable_id(normalise_query(query), prefix)


def query_ids(queries: pd.Series, prefix: str = "q") -> pd.Series:
    """``query_id`` over a column."""
    return normalise_queries(queries).map(lambda q: stable_id(q, prefix))
