"""``create_app``: the FastAPI app composed of the service's routers, error handlers and middleware around a loaded
pipeline (and optionally a second one for the side-by-side page); what the routes share lives on ``app.state``."""

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from reldistill.recipe.retrieval import ServeConfig
from reldistill.rerank import Reranker
from reldistill.retrieval.pipeline import SearchPipeline
from reldistill.retrieval.service.middleware import BodyLimit, TrustedHosts, add_error_handlers
from reldistill.retrieval.service.routes import catalog, health, page, rerank, search
from reldistill.retrieval.service.state import ServiceState


def create_app(pipeline: SearchPipeline, config: ServeConfig | None = None, compare: SearchPipeline | None = None,
               reranker: Reranker | None = None) -> FastAPI:
    """Build the app around a loaded pipeline (and optionally a second one for the side-by-side page).

    ``reranker`` answers ``/rerank`` (default: the pipeline's own, its teacher loaded on first use)."""
    cfg = config or ServeConfig()
    pipelines = {"main": pipeline, **({"compare": compare} if compare is not None else {})}
    service = ServiceState(pipelines, cfg, reranker)
    app = FastAPI(title="reldistill search", version="1", summary="Hybrid product search distilled from an LLM teacher.",
                  description="BM25 + distilled dense retrieval fused with RRF, optional LLM-teacher rerank.")
    app.state.service, app.state.pipelines, app.state.config = service, pipelines, cfg
    add_error_handlers(app)
    for routes in (search, catalog, health, rerank, page):
        app.include_router(routes.router(cfg))
    if cfg.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Content-Type"])
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.add_middleware(TrustedHosts, hosts=list(cfg.trusted_hosts))
    app.on_event("shutdown")(service.close)
    return app
