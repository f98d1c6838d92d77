"""Index: what mining and search both stand on: FAISS dense index + id map, BM25, RRF fusion, the catalog.

Public API: ``DenseIndex`` (``reldistill.index.dense``), ``BM25Index`` (``reldistill.index.lexical``),
``rrf_fuse`` (``reldistill.index.fusion``) and ``Catalog`` (``reldistill.index.catalog``).

Export style (every package of the project follows it): a package's ``__init__`` names its public API in
``__all__`` and maps each name to its home module in ``_EXPORTS``; a module ``__getattr__`` (PEP 562) imports
that module on first use, so ``import reldistill.index.fusion`` never loads FAISS, BM25 or pandas, and
``from reldistill.index import DenseIndex`` is the same object as ``reldistill.index.dense.DenseIndex``.
Inside the project, code imports from the home module.
"""

from __future__ import annotations

from reldistill.exports import lazy_exports

_EXPORTS = {
    "BM25Index": "reldistill.index.lexical",
    "Catalog": "reldistill.index.catalog",
    "DenseIndex": "reldistill.index.dense",
    "rrf_fuse": "reldistill.index.fusion",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
