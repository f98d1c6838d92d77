"""Recipe sections of the retrieval stage: ``index:``, ``search:`` and ``serve:`` (validated on creation)."""

from __future__ import annotations

import dataclasses

from reldistill.errors import UserError

INDEX_KINDS = ("flat", "hnsw", "ivfpq")
IVF_REFINES = ("none", "sq8", "fp16", "flat")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MODES = ("bm25", "dense", "hybrid", "rerank")


@dataclasses.dataclass
class IndexConfig:
    """How the dense index is built (FAISS kind and its knobs) and how products are encoded."""

    kind: str = dataclasses.field(default="flat", metadata={"help": "flat (exact inner product) | hnsw | ivfpq."})
    hnsw_m: int = 32  # HNSW graph degree
    hnsw_ef_construction: int = 80  # HNSW candidate list size while building
    hnsw_ef_search: int = 64  # HNSW candidate list size per search (recall vs speed)
    ivf_nlist: int = 0  # 0 → about 4*sqrt(n) lists
    ivf_nprobe: int = 16  # IVF lists searched per query (recall vs speed)
    pq_m: int = 48  # PQ sub-quantizers (must divide the dimension)
    pq_bits: int = 8  # bits per PQ code
    ivf_refine: str = dataclasses.field(default="none", metadata={"help": (
        "ivfpq only: re-score the PQ shortlist with a second copy of the vectors — none | sq8 (1 byte per dimension) "
        "| fp16 (2) | flat (4, exact).")})
    refine_k_factor: int = 4  # the refined shortlist is k × this many PQ hits
    batch_size: int = 64  # product encoding batch size

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise UserError(f"index.kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}.")
        if self.ivf_refine not in IVF_REFINES:
            raise UserError(f"index.ivf_refine must be one of {', '.join(IVF_REFINES)}, got {self.ivf_refine!r}.")
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe", "pq_m", "refine_k_factor", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"index.{name} must be at least 1, got {getattr(self, name)}.")
        if self.ivf_nlist < 0:
            raise UserError(f"index.ivf_nlist must be 0 (automatic) or positive, got {self.ivf_nlist}.")
        if not 1 <= self.pq_bits <= 16:
            raise UserError(f"index.pq_bits must be in [1, 16], got {self.pq_bits}.")


@dataclasses.dataclass
class SearchConfig:
    """Candidate depths, RRF constants and rerank depth of the search pipeline."""

    depth: int = 100  # candidates taken from each retriever before fusion
    rrf_k: int = 60  # the k of Reciprocal Rank Fusion: 1 / (k + rank)
    weights: dict[str, float] = dataclasses.field(default_factory=lambda: {"bm25": 1.0, "dense": 1.0})  # RRF weight of each retriever (bm25, dense)
    rerank_k: int = dataclasses.field(default=20, metadata={"help": "Fused candidates the teacher reranks."})
    rerank_weight: float | None = dataclasses.field(default=None, metadata={"help": (
        "Order of the reranked top-k: null = the teacher's order alone; w = RRF of the fused (first-stage) rank "
        "(weight 1) and the teacher's rank (weight w), so a teacher weaker than the first stage only nudges it.")})
    max_k: int = 100  # largest k a caller may ask for

    def __post_init__(self) -> None:
        for name in ("depth", "rrf_k", "rerank_k", "max_k"):
            if getattr(self, name) < 1:
                raise UserError(f"search.{name} must be at least 1, got {getattr(self, name)}.")
        unknown = set(self.weights) - {"bm25", "dense"}
        if unknown:
            raise UserError(f"search.weights has unknown retriever(s) {', '.join(sorted(unknown))}; use bm25 and dense.")
        if any(w < 0 for w in self.weights.values()):
            raise UserError("search.weights must be non-negative.")
        if self.rerank_weight is not None and not self.rerank_weight > 0:
            raise UserError(f"search.rerank_weight must be positive (or null: the teacher's order alone), got {self.rerank_weight}.")


@dataclasses.dataclass
class ServeConfig:
    """HTTP service limits and exposure (loopback, no CORS and no key by default)."""

    host: str = dataclasses.field(default="127.0.0.1", metadata={"help": "Interface to bind (127.0.0.1: loopback only)."})
    port: int = dataclasses.field(default=8000, metadata={"help": "Port."})
    api_key: str | None = dataclasses.field(default=None, metadata={"help": "Require this X-API-Key header on API calls."})
    max_q_chars: int = 512  # longest query accepted (characters)
    max_k: int = 100  # largest k a request may ask for
    max_body_bytes: int = 1 << 20  # largest request body (bytes; 413 beyond)
    max_rerank_documents: int = 1000  # most documents one rerank request may send
    max_document_chars: int = 4096  # longest document text accepted by rerank (characters)
    max_rerank_tokens: int = 65536  # documents x tokens one /rerank request may cost (each doc capped at the teacher's max length)
    max_concurrent_reranks: int = 2  # reranks running at once; more get 503 at once
    rerank_timeout_s: float = 30.0  # a rerank past this many seconds stops between batches
    header_timeout_s: float = 10.0  # a connection that sends no whole request head in this time is closed
    max_idle_per_client: int = 16  # connections one address holds without a request; a new one evicts the oldest
    max_idle_connections: int = 64  # the same for all addresses together
    max_connections: int = 256  # open connections (uvicorn's limit_concurrency); idle ones stay under the caps above
    cors_origins: list[str] = dataclasses.field(default_factory=list)  # origins allowed by CORS (empty: CORS off)
    trusted_hosts: list[str] = dataclasses.field(default_factory=lambda: list(LOOPBACK_HOSTS), metadata={
        "help": "Host header to accept (repeatable; \"*\" for any). Default: loopback names, plus the bound address."})
    allow_remote_without_key: bool = dataclasses.field(default=False, metadata={
        "help": "Allow a non-loopback host without an API key (anyone who reaches the port can use the service)."})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UserError(f"serve.port must be in [0, 65535], got {self.port}.")
        for name in ("max_q_chars", "max_k", "max_body_bytes", "max_rerank_documents", "max_document_chars",
                     "max_rerank_tokens", "max_concurrent_reranks", "max_idle_per_client", "max_idle_connections",
                     "max_connections"):
            if getattr(self, name) < 1:
                raise UserError(f"serve.{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("rerank_timeout_s", "header_timeout_s"):
            if not getattr(self, name) > 0:
                raise UserError(f"serve.{name} must be positive, got {getattr(self, name)}.")
        if self.max_idle_connections >= self.max_connections:
            raise UserError(f"serve.max_idle_connections ({self.max_idle_connections}) must be below serve.max_connections "
                            f"({self.max_connections}), so idle connections never fill the server.")
        if self.api_key is not None and len(self.api_key) < 8:
            raise UserError("serve.api_key must be at least 8 characters long.")
        if not self.trusted_hosts or any(not str(h).strip() for h in self.trusted_hosts):
            raise UserError("serve.trusted_hosts must name hosts (\"*\" accepts any), not an empty name.")

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def check_exposure(self) -> None:
        """Refuse a non-loopback bind without an API key unless ``allow_remote_without_key`` says so."""
        if not self.loopback and self.api_key is None and not self.allow_remote_without_key:
            raise UserError(f"binding {self.host} exposes the service beyond this machine without an API key — "
                            "pass --api-key (or set serve.api_key), or --allow-remote-without-key to do it anyway.")
