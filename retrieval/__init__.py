"""Retrieval: FAISS + BM25 indexes, RRF fusion, search pipeline, HTTP service and web page.

Public API (imported lazily so the CLI stays fast): ``DenseIndex``, ``BM25Index``, ``rrf_fuse``,
``build_index``, ``SearchPipeline``, ``create_app``, and ``reldistill.bench.latency.latency``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DenseIndex": "reldistill.index.dense",
    "BM25Index": "reldistill.index.lexical",
    "rrf_fuse": "reldistill.index.fusion",
    "build_index": "reldistill.retrieval.build",
    "SearchPipeline": "reldistill.retrieval.pipeline",
    "SearchResponse": "reldistill.retrieval.pipeline",
    "SearchHit": "reldistill.retrieval.pipeline",
    "Catalog": "reldistill.index.catalog",
    "create_app": "reldistill.retrieval.service",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
