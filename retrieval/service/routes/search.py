"""``GET /search``: one query through a pipeline (bm25 | dense | hybrid | rerank), its hits and stage timings."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from reldistill.recipe.retrieval import ServeConfig
from reldistill.retrieval.service.middleware import GUARDED, invalid
from reldistill.retrieval.service.params import with_params
from reldistill.retrieval.service.schemas import Mode, SearchOut, error_responses
from reldistill.retrieval.service.state import Service


async def search(q: str, k: int = 10, mode: Mode | None = None,
                 pipeline: Annotated[str, Query(max_length=32)] = "main",
                 rerank_k: int | None = None,
                 min_score: Annotated[float | None, Query(ge=0.0, le=1.0, description="keep results with calibrated P(Exact) >= this")] = None,
                 *, service: Service):
    if not q.strip():
        raise invalid(["query", "q"], "q must contain a non-space character")
    p = service.pick(pipeline)
    mode = mode or p.default_mode  # the run's dev-chosen mode (serving.json)
    if mode == "rerank" and not p.has_reranker:
        raise HTTPException(status_code=400, detail="mode 'rerank' needs a teacher, and this server has none")
    call = lambda: p.search(q, mode=mode, k=k, rerank_k=rerank_k, min_score=min_score)  # noqa: E731
    if mode == "rerank":
        await service.in_rerank_slot(lambda: service.load_reranker(p))
        res = await service.in_rerank_slot(call)
    else:
        res = await asyncio.to_thread(call)
    out = res.to_dict()
    return SearchOut(pipeline=pipeline, **out)


def router(cfg: ServeConfig) -> APIRouter:
    r = APIRouter()
    endpoint = with_params(search, q=Query(min_length=1, max_length=cfg.max_q_chars, description="the query"),
                           k=Query(ge=1, le=cfg.max_k), rerank_k=Query(ge=1, le=cfg.max_k))
    r.add_api_route("/search", endpoint, methods=["GET"], response_model=SearchOut, dependencies=GUARDED,
                    tags=["search"], responses=error_responses())
    return r
