"""Config dataclasses and YAML loading with clear errors for unknown or mistyped keys."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from reldistill.errors import UserError
from reldistill.labels import DEFAULT_GAINS, DEFAULT_SOFT_LABELS

T = TypeVar("T")

DEFAULT_DATA_DIR = "../shared/data/esci-sample"


@dataclasses.dataclass
class DataConfig:
    """Where the judged pairs come from and how product text and splits are built."""

    path: str = DEFAULT_DATA_DIR  # ESCI directory, or a CSV/JSONL/parquet table
    products_path: str | None = None  # products table for a generic table with product_id only
    locale: str | None = "us"  # ESCI product_locale filter; None keeps every locale
    small_version: bool = False  # keep only rows of the ESCI "small" (Task 1) version
    text_fields: list[str] = dataclasses.field(default_factory=lambda: ["title", "brand", "color"])
    max_text_chars: int = 512  # cap on product text after HTML stripping
    soft_labels: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SOFT_LABELS))
    gains: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_GAINS))
    test_fraction: float = 0.15  # only used when the data has no split column
    dev_fraction: float = 0.15  # share of train queries held out for model selection
    seed: int = 13

    def __post_init__(self) -> None:
        for name in ("test_fraction", "dev_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise UserError(f"data.{name} must be in [0, 1), got {v}.")
        if self.max_text_chars < 16:
            raise UserError(f"data.max_text_chars must be at least 16, got {self.max_text_chars}.")
        if set(self.soft_labels) != set(self.gains):
            raise UserError("data.soft_labels and data.gains must name the same labels.")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a UserError."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p} does not exist — pass an existing YAML file (see configs/).")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"config file {p} is not valid YAML ({type(e).__name__}) — fix its syntax.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of sections, not a {type(data).__name__}.")
    return data


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
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"{where} has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(fields)}.")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)  # type: ignore[call-arg]


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass → plain dict (for manifests)."""
    return dataclasses.asdict(obj)
