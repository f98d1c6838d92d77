"""The search service (FastAPI): search, products, similar items, stats, health, a Cohere-compatible rerank, and the web page.

``POST /rerank`` (also ``/v1/rerank`` and ``/v2/rerank``) speaks the Cohere rerank contract that search
engines call unchanged: OpenSearch ML Commons' ``connector.pre_process.cohere.rerank`` /
``post_process.cohere.rerank`` connector and Elasticsearch's ``custom`` inference service (task
``rerank``). Every document comes back unless ``top_n`` asks for fewer.

Hardening: loopback by default (the CLI), a trusted-Host allow-list (loopback names by default, so a web
page cannot drive the local server), optional ``X-API-Key`` header, body size (declared or chunked) /
q length / k limits, a per-request rerank budget (documents x tokens), at most
``max_concurrent_reranks`` reranks at once (503 when busy), a rerank deadline checked between batches,
a failed teacher load remembered (clients get a generic 503, the log the detail), CORS off unless
origins are configured, and error bodies that never echo inputs or internals.

The package: ``schemas`` (the pydantic models), ``middleware`` (body limit, trusted hosts, API key, error
answers), ``state`` (what the routes share: pipelines, limits, rerank slots), ``params`` (limits from the
config in request parameters), ``routes/`` (``search``, ``catalog``, ``health``, ``rerank``, ``page``: an
``APIRouter`` each over module-level handlers) and ``app`` (``create_app``, which composes them).

Public API (the package's lazy map, as every package's ``__init__``): ``create_app``.
"""

from __future__ import annotations

from reldistill.exports import lazy_exports

_EXPORTS = {"create_app": "reldistill.retrieval.service.app"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
