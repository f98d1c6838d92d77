"""The service's request and response models (pydantic): search hits, products, the Cohere rerank contract."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["bm25", "dense", "hybrid", "rerank"]
PRODUCT_ID = r"^[A-Za-z0-9._:\-]{1,64}$"


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


def error_responses() -> dict[int, dict]:
    """The error answers a guarded route documents in OpenAPI (each with a ``detail`` message)."""
    return {c: {"model": Message} for c in (400, 401, 404, 413, 503, 504)}
