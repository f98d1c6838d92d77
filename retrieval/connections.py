"""Connection hygiene for `reldistill serve`: idle connections cannot starve the server.

uvicorn counts every open connection against ``limit_concurrency`` and gives a connection that never
sends a request no deadline, so a few hundred idle sockets made every request (``/health`` included)
answer 503. ``guarded_protocol`` is uvicorn's h11 protocol with three rules:

- a connection must send a whole request head within ``header_timeout_s`` of opening (or of its
  previous response), else it is closed (slow or half requests included);
- one client address holds at most ``max_idle_per_client`` connections that have not sent a request
  head; a new one evicts that client's oldest idle one;
- all clients together hold at most ``max_idle_connections`` such connections (the oldest goes first).

A connection that has sent its request is never evicted, so a client that talks is served.
"""

from __future__ import annotations

import socket
from collections import OrderedDict

from reldistill.errors import UserError
from reldistill.recipe.retrieval import ServeConfig


def guarded_protocol(header_timeout_s: float, max_idle_per_client: int, max_idle_connections: int):
    """A subclass of uvicorn's ``H11Protocol`` enforcing the rules above (its idle registry is its own)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    idle: OrderedDict = OrderedDict()  # protocol -> client host, oldest first

    class GuardedH11Protocol(H11Protocol):
        _timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._mark_idle()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # a request head arrived
                self._mark_busy()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._mark_idle()  # a kept-alive connection gets the same deadline for its next request head

        def connection_lost(self, exc) -> None:
            self._mark_busy()
            super().connection_lost(exc)

        def _mark_idle(self) -> None:
            self._mark_busy()
            host = self.client[0] if self.client else ""
            idle[self] = host
            self._timer = self.loop.call_later(header_timeout_s, self._expire)
            same = [p for p, h in idle.items() if h == host]
            for p in same[:max(0, len(same) - max_idle_per_client)]:
                p._close()
            while len(idle) > max_idle_connections:
                next(iter(idle))._close()

        def _mark_busy(self) -> None:
            idle.pop(self, None)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if self.conn.their_state is h11.IDLE:
                self._close()

        def _close(self) -> None:
            self._mark_busy()
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def uvicorn_config(app, cfg: ServeConfig):
    """The ``uvicorn.Config`` `reldistill serve` runs ``app`` under (tests start the same one)."""
    import uvicorn

    protocol = guarded_protocol(cfg.header_timeout_s, cfg.max_idle_per_client, cfg.max_idle_connections)
    return uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", server_header=False, http=protocol,
                          limit_concurrency=cfg.max_connections, timeout_keep_alive=int(max(1, cfg.header_timeout_s)),
                          h11_max_incomplete_event_size=16 * 1024)


def check_port_free(host: str, port: int) -> None:
    """Refuse (UserError) a port another process listens on, before any model loads."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror}) — stop what uses it or pass --port.") from None
