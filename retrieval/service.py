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
"""


import asyncio
import hmac
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from reldistill.errors import UserError
from reldistill.recipe.retrieval import ServeConfig
from reldistill.rerank import RerankTimeout, Reranker, deadline
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
    p_exact: float | None = Field(None, description="calibrated P(Exact) (the teacher's when reranked, else the student's)")
    p_exact_or_substitute: float | None = Field(None, description="calibrated P(Exact or Substitute)")


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
    """Cohere v1/v2-style request: documents are strings or {id, text}; ``top_n`` limits the answer."""

    query: str = Field(..., min_length=1)
    documents: list[str | RerankDocument] = Field(..., min_length=1)
    top_n: int | None = Field(None, ge=1)
    model: str | None = Field(None, max_length=256, description="ignored: the service's teacher answers")
    return_documents: bool = False
    max_tokens_per_doc: int | None = Field(None, ge=1, description="cut each document after this many tokens")
    min_score: float | None = Field(None, ge=0.0, le=1.0, description="drop documents whose calibrated P(Exact) is below this")


class RerankResult(BaseModel):
    """Cohere's result; a calibrated reranker adds ``p_exact`` and ``p_exact_or_substitute`` beside the raw score."""

    model_config = ConfigDict(extra="allow")

    index: int
    id: str | None
    relevance_score: float
    document: dict | None = None


class RerankOut(BaseModel):
    """Cohere's answer shape: ``id``, ``results`` (best first, ``index`` into the request) and ``meta``."""

    id: str
    model: str
    results: list[RerankResult]
    meta: dict


class Message(BaseModel):
    detail: str


def _invalid(loc: list[str], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (so it matches the OpenAPI schema)."""
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": message, "type": "value_error"}])


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message})


class BodyLimit:
    """ASGI middleware: refuse request bodies larger than ``limit`` bytes with 413 (declared or streamed).

    A body without Content-Length (chunked) is read here first, up to the limit, and replayed to the app:
    a parse error inside the app must not turn "too large" into a 400.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = _error(413, f"request body larger than {self.limit} bytes")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await too_big(scope, receive, send)
        if declared is None and b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body, more = b"", True
            while more:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
                if len(body) > self.limit:
                    return await too_big(scope, receive, send)
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await self.app(scope, replay, send)
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


def _host_name(host_header: str) -> str:
    """The name in a Host header, without the port (``[::1]:8000`` -> ``::1``)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class TrustedHosts:
    """ASGI middleware: answer 400 unless the Host header names an allowed host (DNS-rebinding guard).

    Starlette's ``TrustedHostMiddleware`` cuts ``[::1]:8000`` at the first colon, so IPv6 loopback
    would never match; this one parses bracketed hosts.
    """

    def __init__(self, app, hosts: list[str]):
        self.app = app
        self.any = "*" in hosts
        self.hosts = {h.strip("[]").lower() for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.any:
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if _host_name(host) not in self.hosts:
            return await _error(400, "invalid Host header")(scope, receive, send)
        return await self.app(scope, receive, send)


class _Unavailable(Exception):
    pass


def truncate_tokens(rr: Reranker, texts: list[str], max_tokens: int) -> list[str]:
    """Each text cut after ``max_tokens`` tokens of the reranker's tokenizer (words when it has none)."""
    if hasattr(rr, "truncate"):
        return rr.truncate(texts, max_tokens)
    return [" ".join(t.split()[:max_tokens]) for t in texts]


def rerank_cost(rr: Reranker, texts: list[str]) -> int:
    """The work of one rerank: the sum over documents of their tokens, each capped at what the reranker reads."""
    counts = rr.count_tokens(texts) if hasattr(rr, "count_tokens") else [len(t.split()) for t in texts]
    cap = getattr(rr, "max_length", None)
    return int(sum(min(c, cap) if cap else c for c in counts))


def above(ranked: list, min_score: float) -> list:
    """The ranked results whose calibrated P(Exact) is at least ``min_score`` (400 when the reranker has none)."""
    if any(getattr(r, "p_exact", None) is None for r in ranked):
        raise HTTPException(status_code=400, detail="min_score needs a calibrated reranker, and this one has no calibration "
                                                    "— fit it with `reldistill calibrate --run RUN`")
    return [r for r in ranked if r.p_exact >= min_score]


def create_app(pipeline: SearchPipeline, config: ServeConfig | None = None, compare: SearchPipeline | None = None,
               reranker: Reranker | None = None) -> FastAPI:
    """Build the app around a loaded pipeline (and optionally a second one for the side-by-side page)."""
    cfg = config or ServeConfig()
    pipelines = {"main": pipeline, **({"compare": compare} if compare is not None else {})}
    pool = ThreadPoolExecutor(max_workers=cfg.max_concurrent_reranks, thread_name_prefix="rerank")
    slots = threading.BoundedSemaphore(cfg.max_concurrent_reranks)
    failed_loads: set[int] = set()  # pipelines whose teacher failed to load: not retried
    app = FastAPI(title="reldistill search", version="1", summary="Hybrid product search distilled from an LLM teacher.",
                  description="BM25 + distilled dense retrieval fused with RRF, optional LLM-teacher rerank.")
    app.state.pipelines = pipelines
    app.state.config = cfg
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)  # Cohere clients and connectors send "Authorization: Bearer <key>"

    def require_key(key: Annotated[str | None, Depends(key_header)],
                    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if cfg.api_key is None:
            return
        given = [k for k in (key, token.credentials if token else None) if k]
        if not any(hmac.compare_digest(k.encode(), cfg.api_key.encode()) for k in given):
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header (or Authorization: Bearer key)")

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
    errors = {c: {"model": Message} for c in (400, 401, 404, 413, 503, 504)}

    @app.get("/search", response_model=SearchOut, dependencies=guarded, tags=["search"], responses=errors)
    async def search(q: Annotated[str, Query(min_length=1, max_length=cfg.max_q_chars, description="the query")],
                     k: Annotated[int, Query(ge=1, le=cfg.max_k)] = 10, mode: Mode | None = None,
                     pipeline: Annotated[str, Query(max_length=32)] = "main",
                     rerank_k: Annotated[int | None, Query(ge=1, le=cfg.max_k)] = None,
                     min_score: Annotated[float | None, Query(ge=0.0, le=1.0, description="keep results with calibrated P(Exact) >= this")] = None):
        if not q.strip():
            raise _invalid(["query", "q"], "q must contain a non-space character")
        p = pick(pipeline)
        mode = mode or p.default_mode  # the run's dev-chosen mode (serving.json)
        if mode == "rerank" and not p.has_reranker:
            raise HTTPException(status_code=400, detail="mode 'rerank' needs a teacher, and this server has none")
        call = lambda: p.search(q, mode=mode, k=k, rerank_k=rerank_k, min_score=min_score)  # noqa: E731
        if mode == "rerank":
            await _timed(lambda: _load(p))
            res = await _timed(call)
        else:
            res = await asyncio.to_thread(call)
        out = res.to_dict()
        return SearchOut(pipeline=pipeline, **out)

    async def _timed(fn):
        """Run ``fn`` on the rerank pool: 503 at once when every slot is busy, 504 past the deadline.

        The deadline also holds inside the worker (``check_deadline`` between batches), so a timed-out
        rerank stops instead of running on; its slot is freed only when the worker really ends.
        """
        if not slots.acquire(blocking=False):
            raise HTTPException(status_code=503, detail="the reranker is busy; retry shortly", headers={"Retry-After": "1"})

        def job():
            try:
                with deadline(cfg.rerank_timeout_s):
                    return fn()
            finally:
                slots.release()

        fut = asyncio.get_running_loop().run_in_executor(pool, job)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late RerankTimeout is not "never retrieved"
        try:  # shielded: a job is never cancelled before it starts, so its finally always frees the slot
            return await asyncio.wait_for(asyncio.shield(fut), cfg.rerank_timeout_s)
        except (asyncio.TimeoutError, RerankTimeout):
            raise HTTPException(status_code=504, detail=f"rerank took longer than {cfg.rerank_timeout_s:g} s") from None
        except _Unavailable:
            raise HTTPException(status_code=503, detail="the reranker is unavailable (see the server log)") from None

    def _load(p: SearchPipeline) -> Reranker:
        """The pipeline's reranker, loaded once; a failed load is logged, remembered and never retried."""
        if id(p) in failed_loads:
            raise _Unavailable
        try:
            return p.reranker
        except Exception:
            log.exception("loading the reranker of pipeline %r failed; rerank stays off until restart", p.name)
            failed_loads.add(id(p))
            raise _Unavailable from None

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
              responses=errors)
    @app.post("/v1/rerank", response_model=RerankOut, dependencies=guarded, tags=["rerank"],
              responses=errors)
    @app.post("/v2/rerank", response_model=RerankOut, dependencies=guarded, tags=["rerank"],
              responses=errors)
    async def rerank(body: RerankIn, request: Request):
        """Cohere-compatible rerank: every document scored by the teacher, best first, ``index`` into the request."""
        if len(body.query) > cfg.max_q_chars:
            raise _invalid(["body", "query"], f"query longer than {cfg.max_q_chars} characters")
        if not body.query.strip():  # as /search refuses it
            raise _invalid(["body", "query"], "query must contain a non-space character")
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
            rr = await _timed(lambda: _load(pipeline))
        def work():  # in a rerank slot: a busy server answers 503 before it tokenizes anything
            texts = [t for _, t in docs]
            if body.max_tokens_per_doc is not None:
                texts = truncate_tokens(rr, texts, body.max_tokens_per_doc)
            cost = rerank_cost(rr, texts)
            if cost > cfg.max_rerank_tokens:
                raise HTTPException(status_code=413, detail=f"this rerank costs {cost} tokens (documents x tokens); the limit "
                                    f"is {cfg.max_rerank_tokens} — send fewer or shorter documents, or set max_tokens_per_doc")
            return rr.rerank(body.query, [(str(i), t) for i, t in enumerate(texts)], top_k=body.top_n)

        ranked = await _timed(work)
        if body.min_score is not None:
            ranked = above(ranked, body.min_score)
        results = []
        for r in ranked:
            i = int(r.id)
            probs = {k: getattr(r, k) for k in ("p_exact", "p_exact_or_substitute") if getattr(r, k, None) is not None}
            results.append(RerankResult(index=i, id=docs[i][0], relevance_score=float(r.score),
                                        document={"text": docs[i][1]} if body.return_documents else None, **probs))
        version = "2" if request.url.path.startswith("/v2/") else "1"
        return RerankOut(id=str(uuid.uuid4()), model=getattr(rr, "name", "reranker"), results=results,
                         meta={"api_version": {"version": version}, "billed_units": {"search_units": 1}})

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
    app.add_middleware(TrustedHosts, hosts=list(cfg.trusted_hosts))

    @app.on_event("shutdown")
    def _close() -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    return app
