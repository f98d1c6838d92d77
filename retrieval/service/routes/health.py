"""``GET /stats`` (pipelines, limits, modes, example queries for the page) and ``GET /health`` (liveness, no key)."""

from fastapi import APIRouter

from reldistill.recipe.retrieval import ServeConfig
from reldistill.retrieval.service.middleware import GUARDED
from reldistill.retrieval.service.schemas import error_responses
from reldistill.retrieval.service.state import Service


async def stats(*, service: Service):
    cfg, pipeline = service.config, service.main
    return {"pipelines": {n: p.stats() for n, p in service.pipelines.items()},
            "limits": {"max_q_chars": cfg.max_q_chars, "max_k": cfg.max_k, "max_body_bytes": cfg.max_body_bytes,
                       "max_rerank_documents": cfg.max_rerank_documents, "rerank_timeout_s": cfg.rerank_timeout_s},
            "modes": ["bm25", "dense", "hybrid"] + (["rerank"] if pipeline.has_reranker else []),
            "default_mode": pipeline.default_mode if pipeline.default_mode != "rerank" or pipeline.has_reranker else "hybrid",
            "example_queries": pipeline.catalog.example_queries(8)}


async def health(*, service: Service):
    return {"status": "ok", "products": len(service.main.catalog)}


def router(cfg: ServeConfig) -> APIRouter:
    r = APIRouter()
    r.add_api_route("/stats", stats, methods=["GET"], dependencies=GUARDED, tags=["service"], responses=error_responses())
    r.add_api_route("/health", health, methods=["GET"], tags=["service"])
    return r
