"""``POST /rerank`` (also ``/v1/rerank`` and ``/v2/rerank``): the Cohere rerank contract search engines call unchanged.

Every document comes back, best first, unless ``top_n`` asks for fewer; a request's work (documents x tokens)
is bounded by ``max_rerank_tokens`` and runs in a rerank slot under the deadline.
"""

import uuid

from fastapi import APIRouter, HTTPException, Request

from reldistill.recipe.retrieval import ServeConfig
from reldistill.rerank import Reranker
from reldistill.retrieval.service.middleware import GUARDED, invalid
from reldistill.retrieval.service.schemas import RerankIn, RerankOut, RerankResult, error_responses
from reldistill.retrieval.service.state import Service


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


def checked_documents(body: RerankIn, cfg: ServeConfig) -> list[tuple[str | None, str]]:
    """The request's (id, text) documents, after the limits on query and documents (422 past one)."""
    if len(body.query) > cfg.max_q_chars:
        raise invalid(["body", "query"], f"query longer than {cfg.max_q_chars} characters")
    if not body.query.strip():  # as /search refuses it
        raise invalid(["body", "query"], "query must contain a non-space character")
    if len(body.documents) > cfg.max_rerank_documents:
        raise invalid(["body", "documents"], f"more than {cfg.max_rerank_documents} documents")
    docs = [(None, d) if isinstance(d, str) else (d.id, d.text) for d in body.documents]
    if any(len(t) > cfg.max_document_chars for _, t in docs):
        raise invalid(["body", "documents"], f"a document is longer than {cfg.max_document_chars} characters")
    if any(not t.strip() for _, t in docs):
        raise invalid(["body", "documents"], "a document text is empty")
    return docs


def ranked_within_budget(rr: Reranker, body: RerankIn, texts: list[str], max_tokens: int) -> list:
    """The reranker's order of ``texts`` (ids are their positions); 413 when the rerank would cost over ``max_tokens``.

    Runs in a rerank slot: a busy server answers 503 before it tokenizes anything."""
    if body.max_tokens_per_doc is not None:
        texts = truncate_tokens(rr, texts, body.max_tokens_per_doc)
    cost = rerank_cost(rr, texts)
    if cost > max_tokens:
        raise HTTPException(status_code=413, detail=f"this rerank costs {cost} tokens (documents x tokens); the limit "
                            f"is {max_tokens} — send fewer or shorter documents, or set max_tokens_per_doc")
    return rr.rerank(body.query, [(str(i), t) for i, t in enumerate(texts)], top_k=body.top_n)


async def rerank(body: RerankIn, request: Request, *, service: Service):
    """Cohere-compatible rerank: every document scored by the teacher, best first, ``index`` into the request."""
    cfg, pipeline = service.config, service.main
    docs = checked_documents(body, cfg)
    rr = service.reranker
    if rr is None:
        if not pipeline.has_reranker:
            raise HTTPException(status_code=503, detail="this server has no reranker (start it on a run with a teacher)")
        rr = await service.in_rerank_slot(lambda: service.load_reranker(pipeline))
    ranked = await service.in_rerank_slot(lambda: ranked_within_budget(rr, body, [t for _, t in docs], cfg.max_rerank_tokens))
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


def router(cfg: ServeConfig) -> APIRouter:
    r = APIRouter()
    errors = error_responses()
    for path in ("/v2/rerank", "/v1/rerank", "/rerank"):  # the order the routes were always registered in
        r.add_api_route(path, rerank, methods=["POST"], response_model=RerankOut, dependencies=GUARDED, tags=["rerank"],
                        responses=errors)
    return r
