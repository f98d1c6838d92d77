"""ESCI label maps: soft training labels and nDCG gains. Data, not code: both are configurable."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from reldistill.errors import UserError

# Seed recipe soft labels for the teacher's BCE target.
DEFAULT_SOFT_LABELS: dict[str, float] = {"E": 1.0, "S": 0.5, "C": 0.0, "I": 0.0}
# ESCI graded gains for nDCG (Reddy et al. 2022).
DEFAULT_GAINS: dict[str, float] = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
# Long-form names some copies of ESCI use.
_ALIASES = {"exact": "E", "substitute": "S", "complement": "C", "irrelevant": "I"}


def normalise_labels(labels: pd.Series, known: Mapping[str, float], where: str) -> pd.Series:
    """Map raw labels (``E``, ``exact``...) to canonical keys of ``known``; unknown ones raise UserError."""
    raw = labels.astype("string").str.strip()
    canon = raw.map(lambda v: v if v is pd.NA or v in known else _ALIASES.get(str(v).lower(), v))
    bad = canon[canon.isna() | ~canon.isin(list(known))]
    if len(bad):
        value = raw.loc[bad.index[0]]
        shown = "an empty label" if value is pd.NA or value == "" else f"unknown label {value!r}"
        raise UserError(
            f"{where} has {shown} in {len(bad)} row(s); known labels are "
            f"{', '.join(known)} — fix the rows or add the label to the label map in the config."
        )
    return canon.astype(str)


def map_labels(labels: pd.Series, table: Mapping[str, float], where: str) -> np.ndarray:
    """Map labels through ``table`` (soft labels or gains) after normalising them."""
    canon = normalise_labels(labels, table, where)
    return canon.map(dict(table)).to_numpy(dtype=np.float64)
