"""The ``data:`` recipe section and the checks every section uses: typed construction from a mapping, number ranges."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, TypeVar

from reldistill.errors import UserError
from reldistill.labels import DEFAULT_GAINS, DEFAULT_SOFT_LABELS

T = TypeVar("T")

DEFAULT_DATA_DIR = "../shared/data/esci-extended"


def require_int(value: Any, where: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and other types refused); else one UserError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{where} must be an integer of at least {minimum}, got {value!r}.")
    return value


def require_float(value: Any, where: str, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds given (open or closed ends); else one UserError naming ``where``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}, "
        hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
        rng = f" in {lo or '(-inf, '}{hi or 'inf)'}" if low is not None or high is not None else ""
        raise UserError(f"{where} must be a finite number{rng}, got {value!r}.")
    return float(value)


@dataclasses.dataclass
class DataConfig:
    """Where the judged pairs come from and how product text and splits are built."""

    path: str = dataclasses.field(default=DEFAULT_DATA_DIR, metadata={"help": "ESCI directory, or a CSV/JSONL/parquet table."})
    products_path: str | None = None  # products table for a generic table with product_id only
    locale: str | None = "us"  # ESCI product_locale filter; None keeps every locale
    small_version: bool = False  # keep only rows of the ESCI "small" (Task 1) version
    text_fields: list[str] = dataclasses.field(default_factory=lambda: ["title", "brand", "color"])  # product fields joined into the text the teacher and the student read (any of title, brand, color, bullets, description, category)
    max_text_chars: int = 512  # cap on product text after HTML stripping
    soft_labels: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SOFT_LABELS))  # teacher training target per ESCI label (E=1, S=0.5, C=0, I=0: the seed's soft labels)
    gains: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_GAINS))  # nDCG gain per ESCI label (linear gains, as the official ESCI metric)
    test_fraction: float = 0.15  # only used when the data has no split column
    dev_fraction: float = 0.15  # share of train queries held out for model selection
    seed: int = 13  # seed of the hash split and the dev carve

    def __post_init__(self) -> None:
        for name in ("test_fraction", "dev_fraction"):
            require_float(getattr(self, name), f"data.{name}", 0.0, 1.0, high_open=True)
        require_int(self.max_text_chars, "data.max_text_chars", 16)
        if set(self.soft_labels) != set(self.gains):
            raise UserError("data.soft_labels and data.gains must name the same labels.")
        if not self.soft_labels:
            raise UserError("data.soft_labels is empty — map each label (E, S, C, I) to a training target.")
        for label, v in self.soft_labels.items():
            require_float(v, f"data.soft_labels.{label}", 0.0, 1.0)  # a BCE target: a probability
        for label, v in self.gains.items():
            require_float(v, f"data.gains.{label}", 0.0)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except UserError:
                continue
        raise UserError(f"{where} has the wrong type: {value!r}.")
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where} must be a list, got {value!r}.")
        (inner,) = typing.get_args(tp) or (Any,)
        return [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping, got {value!r}.")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_check_type(k, kt, where): _check_type(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise UserError(f"{where} must be an integer, got {value!r}.")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise UserError(f"{where} must be of type {tp.__name__}, got {value!r}.")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise UserError naming ``where``."""
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of settings, not {data!r}.")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{where} has unknown key(s) {', '.join(unknown)}{hint}; known keys: {', '.join(fields)}.")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)  # type: ignore[call-arg]


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass → plain dict (for manifests)."""
    return dataclasses.asdict(obj)
