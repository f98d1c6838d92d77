"""Retrieval: the search pipeline (bm25 | dense | hybrid RRF | rerank over the `Reranker` protocol), the index
build, the served configuration, and the HTTP service with its web page (``reldistill.retrieval.service``).

Public API: ``SearchPipeline``, ``SearchResponse``, ``SearchHit`` (``reldistill.retrieval.pipeline``),
``build_index`` (``reldistill.retrieval.build``), ``create_app`` (``reldistill.retrieval.service.app``), and
the index layer's ``DenseIndex``, ``BM25Index``, ``rrf_fuse``, ``Catalog`` (homes in ``reldistill.index``).

Export style (as every package's ``__init__``): ``__all__`` names the public API, ``_EXPORTS`` maps each name to
its home module, and a module ``__getattr__`` imports that module on first use, so the CLI stays fast and
importing one submodule loads nothing else. Inside the project, code imports from the home module.
"""

from __future__ import annotations

from reldistill import index
from reldistill.exports import lazy_exports

_EXPORTS = {
    **{name: "reldistill.index" for name in index.__all__},  # the index layer's objects, through its own exports
    "SearchHit": "reldistill.retrieval.pipeline",
    "SearchPipeline": "reldistill.retrieval.pipeline",
    "SearchResponse": "reldistill.retrieval.pipeline",
    "build_index": "reldistill.retrieval.build",
    "create_app": "reldistill.retrieval.service.app",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
