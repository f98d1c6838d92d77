"""Student: sentence-transformers bi-encoder loading and encoding.

Public API: ``load_student``, ``encode_queries``, ``encode_documents`` (reldistill.student.encode). They load torch, so
they are imported on first use: the package's light modules (identity, catalog_vectors, calibrate) stay light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["encode_documents", "encode_queries", "load_student"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from reldistill.student import encode

        return getattr(encode, name)
    raise AttributeError(name)
