"""Read and validate a teacher-scores table before training on it (every bad input → one clear UserError)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from reldistill.artifacts import MANIFEST, file_fingerprint, read_json
from reldistill.data.queries import query_ids
from reldistill.errors import UserError

REQUIRED = ("query", "product_id", "teacher_score")


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """A parquet (or CSV) table; missing, empty or truncated files are UserErrors naming ``path``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist — run the stage that writes it first (or pass the right path).")
    if p.stat().st_size == 0:
        raise UserError(f"{what} {p} is empty (0 bytes) — rerun the stage that writes it.")
    try:
        if p.suffix.lower() == ".csv":
            return pd.read_csv(p, dtype={"query_id": str, "product_id": str, "query": str}, encoding="utf-8")
        return pd.read_parquet(p)
    except UnicodeDecodeError:
        raise UserError(f"{what} {p} is not UTF-8 text — re-save it as UTF-8.") from None
    except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError) as e:
        raise UserError(f"{what} {p} could not be read as {p.suffix.lstrip('.') or 'parquet'} "
                        f"({str(e).splitlines()[0][:120]}) — is it truncated? Rerun the stage that writes it.") from None


def validate_scores(df: pd.DataFrame, catalog_ids: set[str], where: str) -> pd.DataFrame:
    """Check columns, types, NaN/range of scores and product ids; return a clean copy.

    Adds ``query_id`` (from the query text) when absent and ``soft_label`` (NaN) when absent.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{where} has no column {missing[0]!r} (columns: {', '.join(map(str, df.columns))}) — "
                        "score the candidates with `reldistill distill label` (or add the column).")
    if df.empty:
        raise UserError(f"{where} has no rows — the candidate lists are empty; rerun `reldistill distill mine` and `distill label`.")
    df = df.copy()
    for col in ("query", "product_id"):
        vals = df[col]
        if vals.isna().any():
            raise UserError(f"{where} column {col!r} has {int(vals.isna().sum())} empty value(s) — drop or fill those rows.")
        if not (pd.api.types.is_string_dtype(vals) or pd.api.types.is_object_dtype(vals) or pd.api.types.is_integer_dtype(vals)):
            raise UserError(f"{where} column {col!r} must hold text, not {vals.dtype} — fix the column type.")
        df[col] = vals.astype(str)
    if (df["query"].str.strip() == "").any():
        raise UserError(f"{where} column 'query' has empty queries — drop those rows.")
    try:
        score = pd.to_numeric(df["teacher_score"], errors="raise").astype(float)
    except (ValueError, TypeError):
        raise UserError(f"{where} column 'teacher_score' must be numeric (teacher probabilities in [0, 1]) — fix its type.") from None
    bad = ~np.isfinite(score.to_numpy())
    if bad.any():
        raise UserError(f"{where} column 'teacher_score' has {int(bad.sum())} NaN/infinite value(s) — rescore those pairs "
                        "(`reldistill distill label` resumes) or drop them.")
    if ((score < 0) | (score > 1)).any():
        raise UserError(f"{where} column 'teacher_score' must be probabilities in [0, 1] (min {score.min():.3g}, max {score.max():.3g}) "
                        "— pass sigmoid scores, not logits.")
    df["teacher_score"] = score
    unknown = ~df["product_id"].isin(catalog_ids)
    if unknown.any():
        raise UserError(f"{where}: product_id {df.loc[unknown, 'product_id'].iloc[0]!r} ({int(unknown.sum())} row(s)) is not in the "
                        "products catalog — score candidates mined from the same data (data.path / data.locale) or drop those rows.")
    if "query_id" not in df.columns:
        df["query_id"] = query_ids(df["query"])
    df["query_id"] = df["query_id"].astype(str)
    if "soft_label" not in df.columns:
        df["soft_label"] = np.nan
    df["soft_label"] = pd.to_numeric(df["soft_label"], errors="coerce").astype(float)
    dups = df.duplicated(["query_id", "product_id"])
    if dups.any():
        df = df[~dups]
    return df.reset_index(drop=True)


def load_scores(path: str | Path, catalog_ids: set[str]) -> pd.DataFrame:
    """Read + validate a teacher-scores parquet (see ``validate_scores``)."""
    return validate_scores(read_table(path, "scores file"), catalog_ids, f"scores file {path}")


def check_scores_current(scores_path: str | Path) -> None:
    """Refuse a scores file whose candidates changed after `distill label` scored them (e.g. a re-mine).

    ``distill label`` records the candidates file and its sha256 in the scores folder's manifest; scores
    without such a manifest (an exported or hand-made file) are not checked.
    """
    p = Path(scores_path)
    manifest = p.parent / MANIFEST
    if not p.is_file() or not manifest.is_file():
        return
    m = read_json(manifest)
    if m.get("kind") != "scores" or not m.get("candidates") or not m.get("candidates_sha256"):
        return
    cands = Path(m["candidates"])
    cands = cands if cands.is_file() else p.parent / cands.name
    if cands.is_file() and file_fingerprint(cands) != m["candidates_sha256"]:
        raise UserError(f"{p} scores other candidates than {cands} holds now (it changed after `distill label`, "
                        f"e.g. a new `distill mine`) — rerun `reldistill distill label --run {p.parent.parent}` first.")
