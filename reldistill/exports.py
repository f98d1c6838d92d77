"""Package exports, one style for every package: ``__all__`` names the public objects and a map names each one's home
module; the package's ``__getattr__`` imports the home module on first use, so importing a package stays light (no
torch, FAISS or FastAPI until an object that needs them is touched). Code inside the project imports from home modules."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``exports`` maps a public name to the dotted module that defines it."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
