"""What the routes of one app share (``app.state.service``): its pipelines, limits and reranker, and the rerank
slots — at most ``max_concurrent_reranks`` at once (503 when busy), each under the rerank deadline (504)."""

import asyncio
import dataclasses
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from reldistill.recipe.retrieval import ServeConfig
from reldistill.rerank import RerankTimeout, Reranker, deadline
from reldistill.retrieval.pipeline import SearchPipeline

log = logging.getLogger("reldistill.retrieval.service")


class Unavailable(Exception):
    """The pipeline's reranker failed to load (now or earlier): clients get a generic 503."""


@dataclasses.dataclass
class ServiceState:
    """The pipelines by name (``main``, optionally ``compare``), the limits, the reranker given to ``/rerank``
    (else the main pipeline's), the rerank worker pool and its slots, and the pipelines whose reranker failed."""

    pipelines: dict[str, SearchPipeline]
    config: ServeConfig
    reranker: Reranker | None = None
    pool: ThreadPoolExecutor = dataclasses.field(init=False)
    slots: threading.BoundedSemaphore = dataclasses.field(init=False)
    failed_loads: set[int] = dataclasses.field(default_factory=set)  # pipelines whose teacher failed to load: not retried

    def __post_init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=self.config.max_concurrent_reranks, thread_name_prefix="rerank")
        self.slots = threading.BoundedSemaphore(self.config.max_concurrent_reranks)

    @property
    def main(self) -> SearchPipeline:
        return self.pipelines["main"]

    def pick(self, name: str) -> SearchPipeline:
        if name not in self.pipelines:
            raise HTTPException(status_code=404, detail=f"no pipeline named {name!r}; this server has {', '.join(self.pipelines)}")
        return self.pipelines[name]

    async def in_rerank_slot(self, fn):
        """Run ``fn`` on the rerank pool: 503 at once when every slot is busy, 504 past the deadline.

        The deadline also holds inside the worker (``check_deadline`` between batches), so a timed-out
        rerank stops instead of running on; its slot is freed only when the worker really ends.
        """
        timeout = self.config.rerank_timeout_s
        if not self.slots.acquire(blocking=False):
            raise HTTPException(status_code=503, detail="the reranker is busy; retry shortly", headers={"Retry-After": "1"})

        def job():
            try:
                with deadline(timeout):
                    return fn()
            finally:
                self.slots.release()

        fut = asyncio.get_running_loop().run_in_executor(self.pool, job)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late RerankTimeout is not "never retrieved"
        try:  # shielded: a job is never cancelled before it starts, so its finally always frees the slot
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except (asyncio.TimeoutError, RerankTimeout):
            raise HTTPException(status_code=504, detail=f"rerank took longer than {timeout:g} s") from None
        except Unavailable:
            raise HTTPException(status_code=503, detail="the reranker is unavailable (see the server log)") from None

    def load_reranker(self, p: SearchPipeline) -> Reranker:
        """The pipeline's reranker, loaded once; a failed load is logged, remembered and never retried."""
        if id(p) in self.failed_loads:
            raise Unavailable
        try:
            return p.reranker
        except Exception:
            log.exception("loading the reranker of pipeline %r failed; rerank stays off until restart", p.name)
            self.failed_loads.add(id(p))
            raise Unavailable from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def service_state(request: Request) -> ServiceState:
    return request.app.state.service


Service = Annotated[ServiceState, Depends(service_state)]
