"""What guards every request before and around the routes: the body-size limit and trusted-Host middleware (ASGI),
the API key (``X-API-Key`` or ``Authorization: Bearer``), and error answers that never echo inputs or internals."""

import hmac
import logging
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from reldistill.errors import UserError

log = logging.getLogger("reldistill.retrieval.service")

KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)
BEARER = HTTPBearer(auto_error=False)  # Cohere clients and connectors send "Authorization: Bearer <key>"


# ---- errors: messages only, never inputs or tracebacks ----------------------------------------------
def invalid(loc: list[str], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (so it matches the OpenAPI schema)."""
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": message, "type": "value_error"}])


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message})


async def on_validation_error(_: Request, exc: RequestValidationError):
    errors = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "invalid"))[:200],
               "type": str(e.get("type", ""))} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


async def on_user_error(_: Request, exc: UserError):
    return error_response(400, str(exc)[:500])


async def on_http_error(_: Request, exc: StarletteHTTPException):
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=getattr(exc, "headers", None))


async def on_internal_error(_: Request, exc: Exception):
    log.exception("unhandled error")
    return error_response(500, "internal error")


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(UserError, on_user_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_internal_error)


# ---- the API key --------------------------------------------------------------------------------------
def require_key(request: Request, key: Annotated[str | None, Depends(KEY_HEADER)],
                token: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
    """401 unless the request carries the service's key (no key configured: every request passes)."""
    api_key = request.app.state.config.api_key
    if api_key is None:
        return
    given = [k for k in (key, token.credentials if token else None) if k]
    if not any(hmac.compare_digest(k.encode(), api_key.encode()) for k in given):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header (or Authorization: Bearer key)")


GUARDED = [Depends(require_key)]


# ---- ASGI middleware --------------------------------------------------------------------------------------
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
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self.too_big()(scope, receive, send)
        if declared is None and b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return await self.chunked(scope, receive, send)
        return await self.streamed(scope, receive, send)

    def too_big(self) -> JSONResponse:
        return error_response(413, f"request body larger than {self.limit} bytes")

    async def chunked(self, scope, receive, send):
        """Read a chunked body up to the limit (413 past it), then hand it to the app in one message."""
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.limit:
                return await self.too_big()(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def streamed(self, scope, receive, send):
        """Count the body as the app reads it; past the limit, 413 unless the app has started answering."""
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return msg

        started = False

        async def tracking_send(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except BodyTooLarge:
            if not started:
                await self.too_big()(scope, receive, send)


class BodyTooLarge(Exception):
    """A streamed body passed the limit (raised inside the app's ``receive``, caught by :class:`BodyLimit`)."""


def host_name(host_header: str) -> str:
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
        if host_name(host) not in self.hosts:
            return await error_response(400, "invalid Host header")(scope, receive, send)
        return await self.app(scope, receive, send)
