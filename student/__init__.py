"""Student: sentence-transformers bi-encoder loading and encoding.

Public API: ``load_student``, ``encode_queries``, ``encode_documents`` (reldistill.student.encode). They load torch, so
they are imported on first use: the package's light modules (identity, catalog_vectors, calibrate) stay light.
"""

from __future__ import annotations

from reldistill.exports import lazy_exports

_EXPORTS = {name: "reldistill.student.encode" for name in ("encode_documents", "encode_queries", "load_student")}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
