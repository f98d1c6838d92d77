"""``GET /products/{product_id}`` (a catalog row) and ``GET /similar/{product_id}`` (its dense neighbours)."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path as PathParam, Query

from reldistill.recipe.retrieval import ServeConfig
from reldistill.retrieval.service.middleware import GUARDED
from reldistill.retrieval.service.params import with_params
from reldistill.retrieval.service.schemas import PRODUCT_ID, Product, SimilarOut, error_responses
from reldistill.retrieval.service.state import Service


async def product(product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)], *, service: Service):
    row = service.main.catalog.get(product_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no product with this id")
    return row


async def similar(product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)], k: int = 10,
                  pipeline_name: Annotated[str, Query(alias="pipeline", max_length=32)] = "main", *, service: Service):
    p = service.pick(pipeline_name)
    try:
        hits = await asyncio.to_thread(p.similar, product_id, k)
    except KeyError:
        raise HTTPException(status_code=404, detail="no product with this id") from None
    return {"product_id": product_id, "results": [h.__dict__ for h in hits]}


def router(cfg: ServeConfig) -> APIRouter:
    r = APIRouter()
    errors = error_responses()
    r.add_api_route("/products/{product_id}", product, methods=["GET"], response_model=Product, dependencies=GUARDED,
                    tags=["catalog"], responses=errors)
    r.add_api_route("/similar/{product_id}", with_params(similar, k=Query(ge=1, le=cfg.max_k)), methods=["GET"],
                    response_model=SimilarOut, dependencies=GUARDED, tags=["catalog"], responses=errors)
    return r
