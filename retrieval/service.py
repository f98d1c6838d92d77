"""The search service (FastAPI): search, products, similar items, stats, health, a hosted-style /rerank, and the web page.

Hardening: loopback by default (the CLI), optional ``X-API-Key`` header, body size / q length / k
limits, a timeout on rerank, CORS off unless origins are configured, and error bodies that never
echo inputs or internals (validation errors list field + message only; unexpected errors say
"internal error").
"""


import asyncio
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from reldistill.errors import UserError
from reldistill.rerank import Reranker
from reldistill.retrieval.config import ServeConfig
from reldistill.retrieval.pipeline import SearchPipeline

log = logging.getLogger(__name__)
Mode = Literal["bm25", "dense", "hybrid", "rerank"]
PRODUCT_ID = r"^[A-Za-z0-9._:\-]{1,64}$"


# ---- response / request models --------------------------------------------------------------
class Hit(BaseModel):
    product_id: str
    title: str
    brand: str
    score: float
    rank: int
    bm25_rank: int | None = None
    dense_rank: int | None = None
    fused_rank: int | None = None
    rerank_rank: int | None = None
    label: str | None = Field(None, description="ESCI label (E/S/C/I) when the query and product were judged")


class SearchOut(BaseModel):
    query: str
    mode: str
    k: int
    pipeline: str
    judged: bool
    results: list[Hit]
    timings_ms: dict[str, float]


class Product(BaseModel):
    product_id: str
    title: str
    brand: str
    color: str
    text: str


class SimilarOut(BaseModel):
    product_id: str
    results: list[Hit]


class RerankDocument(BaseModel):
    id: str | None = Field(None, max_length=256)
    text: str = Field(..., min_length=1)


class RerankIn(BaseModel):
    """Cohere/Jina-style request: documents are strings or {id, text}; ``top_n`` limits the answer."""

    query: str = Field(..., min_length=1)
    documents: list[str | RerankDocument] = Field(..., min_length=1)
    top_n: int | None = Field(None, ge=1)
    model: str | None = Field(None, max_length=256, description="ignored: the service's teacher answers")
    return_documents: bool = False


class RerankResult(BaseModel):
    index: int
    id: str | None
    relevance_score: float
    document: dict | None = None


class RerankOut(BaseModel):
    model: str
    results: list[RerankResult]


class Message(BaseModel):
    detail: str


def _invalid(loc: list[str], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (so it matches the OpenAPI schema)."""
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": message, "type": "value_error"}])


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message})


class BodyLimit:
    """ASGI middleware: refuse request bodies larger than ``limit`` bytes with 413 (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = _error(413, f"request body larger than {self.limit} bytes")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await too_big(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return msg

        started = False

        async def tracking_send(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except _BodyTooLarge:
            if not started:
                await too_big(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def create_app(pipeline: SearchPipeline, config: ServeConfig | None = None, compare: SearchPipeline | None = None,
               reranker: Reranker | None = None) -> FastAPI:
    """Build the app around a loaded pipeline (and optionally a second one for the side-by-side page)."""
    cfg = config or ServeConfig()
    pipelines = {"main": pipeline, **({"compare": compare} if compare is not None else {})}
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rerank")
    app = FastAPI(title="reldistill search", version="1", summary="Hybrid product search distilled from an LLM teacher.",
                  description="BM25 + distilled dense retrieval fused with RRF, optional LLM-teacher rerank.")
    app.state.pipelines = pipelines
    app.state.config = cfg
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

    def require_key(key: Annotated[str | None, Depends(key_header)]) -> None:
        if cfg.api_key is not None and not (key and hmac.compare_digest(key.encode(), cfg.api_key.encode())):
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header")

    guarded = [Depends(require_key)]

    # ---- error handling: messages only, never inputs or tracebacks --------------------------------
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        errors = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "invalid"))[:200],
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(UserError)
    async def _user(_: Request, exc: UserError):
        return _error(400, str(exc)[:500])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception):
        log.exception("unhandled error")
        return _error(500, "internal error")

    def pick(name: str) -> SearchPipeline:
        if name not in pipelines:
            raise HTTPException(status_code=404, detail=f"no pipeline named {name!r}; this server has {', '.join(pipelines)}")
        return pipelines[name]

    # ---- API --------------------------------------------------------------------------------------
    errors = {c: {"model": Message} for c in (400, 401, 404, 413, 504)}

    @app.get("/search", response_model=SearchOut, dependencies=guarded, tags=["search"], responses=errors)
    async def search(q: Annotated[str, Query(min_length=1, max_length=cfg.max_q_chars, description="the query")],
                     k: Annotated[int, Query(ge=1, le=cfg.max_k)] = 10, mode: Mode | None = None,
                     pipeline: Annotated[str, Query(max_length=32)] = "main",
                     rerank_k: Annotated[int | None, Query(ge=1, le=cfg.max_k)] = None):
        if not q.strip():
            raise _invalid(["query", "q"], "q must contain a non-space character")
        p = pick(pipeline)
        mode = mode or p.default_mode  # the run's dev-chosen mode (serving.json)
        if mode == "rerank" and not p.has_reranker:
            raise HTTPException(status_code=400, detail="mode 'rerank' needs a teacher, and this server has none")
        call = lambda: p.search(q, mode=mode, k=k, rerank_k=rerank_k)  # noqa: E731
        if mode == "rerank":
            res = await _timed(call)
        else:
            res = await asyncio.to_thread(call)
        out = res.to_dict()
        return SearchOut(pipeline=pipeline, **out)

    async def _timed(fn):
        try:
            return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(pool, fn), cfg.rerank_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(status_code=504, detail=f"rerank took longer than {cfg.rerank_timeout_s:g} s") from None

    @app.get("/products/{product_id}", response_model=Product, dependencies=guarded, tags=["catalog"], responses=errors)
    async def product(product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)]):
        row = pipeline.catalog.get(product_id)
        if row is None:
            raise HTTPException(status_code=404, detail="no product with this id")
        return row

    @app.get("/similar/{product_id}", response_model=SimilarOut, dependencies=guarded, tags=["catalog"], responses=errors)
    async def similar(product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)],
                      k: Annotated[int, Query(ge=1, le=cfg.max_k)] = 10,
                      pipeline_name: Annotated[str, Query(alias="pipeline", max_length=32)] = "main"):
        p = pick(pipeline_name)
        try:
            hits = await asyncio.to_thread(p.similar, product_id, k)
        except KeyError:
            raise HTTPException(status_code=404, detail="no product with this id") from None
        return {"product_id": product_id, "results": [h.__dict__ for h in hits]}

    @app.get("/stats", dependencies=guarded, tags=["service"], responses=errors)
    async def stats():
        return {"pipelines": {n: p.stats() for n, p in pipelines.items()},
                "limits": {"max_q_chars": cfg.max_q_chars, "max_k": cfg.max_k, "max_body_bytes": cfg.max_body_bytes,
                           "max_rerank_documents": cfg.max_rerank_documents, "rerank_timeout_s": cfg.rerank_timeout_s},
                "modes": ["bm25", "dense", "hybrid"] + (["rerank"] if pipeline.has_reranker else []),
                "default_mode": pipeline.default_mode if pipeline.default_mode != "rerank" or pipeline.has_reranker else "hybrid",
                "example_queries": pipeline.catalog.example_queries(8)}

    @app.get("/health", tags=["service"])
    async def health():
        return {"status": "ok", "products": len(pipeline.catalog)}

    @app.post("/rerank", response_model=RerankOut, dependencies=guarded, tags=["rerank"],
              responses={**errors, 503: {"model": Message}})
    async def rerank(body: RerankIn):
        if len(body.query) > cfg.max_q_chars:
            raise _invalid(["body", "query"], f"query longer than {cfg.max_q_chars} characters")
        if len(body.documents) > cfg.max_rerank_documents:
            raise _invalid(["body", "documents"], f"more than {cfg.max_rerank_documents} documents")
        docs = [(None, d) if isinstance(d, str) else (d.id, d.text) for d in body.documents]
        if any(len(t) > cfg.max_document_chars for _, t in docs):
            raise _invalid(["body", "documents"], f"a document is longer than {cfg.max_document_chars} characters")
        if any(not t.strip() for _, t in docs):
            raise _invalid(["body", "documents"], "a document text is empty")
        rr = reranker
        if rr is None:
            if not pipeline.has_reranker:
                raise HTTPException(status_code=503, detail="this server has no reranker (start it on a run with a teacher)")
            rr = await _timed(lambda: pipeline.reranker)
        cands = [(str(i), t) for i, (_, t) in enumerate(docs)]
        ranked = await _timed(lambda: rr.rerank(body.query, cands, top_k=body.top_n))
        results = []
        for r in ranked:
            i = int(r.id)
            results.append(RerankResult(index=i, id=docs[i][0], relevance_score=float(r.score),
                                        document={"text": docs[i][1]} if body.return_documents else None))
        return RerankOut(model=getattr(rr, "name", "reranker"), results=results)

    # ---- web page ---------------------------------------------------------------------------------
    static = resources.files("reldistill.retrieval") / "static"

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: Annotated[str, PathParam(pattern=r"^[a-z0-9_\-]+\.(js|css)$")]):
        f = static / name
        if not f.is_file():
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(str(f), media_type="text/javascript" if name.endswith(".js") else "text/css")

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Content-Type"])
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)

    @app.on_event("shutdown")
    def _close() -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    return app
