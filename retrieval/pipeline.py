"""SearchPipeline: bm25 | dense | hybrid (RRF) | rerank (hybrid + teacher rerank of the fused top-k).

Every result carries its product id, title, brand, the final score, the rank it had at each stage
(bm25, dense, fused, rerank), for judged queries its ESCI label, and where the scoring model is
calibrated (reldistill.calibration) P(Exact) and P(Exact or Substitute): the teacher's for reranked
results, else the student's from the cosine of query and product; every response carries the
milliseconds spent in each stage. ``min_score`` keeps the results with P(Exact) at least that.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reldistill.calibration import load_calibration
from reldistill.errors import UserError
from reldistill.index.catalog import Catalog
from reldistill.index.dense import DenseIndex
from reldistill.index.fusion import rrf_fuse
from reldistill.index.lexical import BM25Index
from reldistill.recipe.retrieval import MODES, IndexConfig, SearchConfig
from reldistill.rerank import Reranker
from reldistill.retrieval.build import default_student, encode_catalog, read_index_manifest
from reldistill.run_layout import index_dir_of, repair_run, run_of_index, run_path
from reldistill.settings import Runtime
from reldistill.student.catalog_vectors import load_vectors
from reldistill.student.encode import encode_documents, load_student
from reldistill.student.identity import model_identity
from reldistill.student.query_encoder import query_encoder

MAX_QUERY_CHARS = 2048
# Loads the reranker of a teacher folder; the composition root (reldistill.workflow.compose) passes the teacher's
RerankerLoader = Callable[[Path], Reranker]


@dataclasses.dataclass
class SearchHit:
    product_id: str
    title: str
    brand: str
    score: float
    rank: int
    bm25_rank: int | None = None
    dense_rank: int | None = None
    fused_rank: int | None = None
    rerank_rank: int | None = None
    label: str | None = None  # E/S/C/I when the query and product were judged
    p_exact: float | None = None  # calibrated P(Exact) (teacher's when reranked, else the student's)
    p_exact_or_substitute: float | None = None


@dataclasses.dataclass
class SearchResponse:
    query: str
    mode: str
    k: int
    results: list[SearchHit]
    timings_ms: dict[str, float]
    judged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_query(query: str, max_chars: int = MAX_QUERY_CHARS) -> str:
    if not isinstance(query, str) or not query.strip():
        raise UserError("the query is empty — pass some words to search for.")
    if len(query) > max_chars:
        raise UserError(f"the query is {len(query):,} characters long; the limit is {max_chars:,} — shorten it.")
    return query.strip()


class SearchPipeline:
    """Hybrid product search over one index (dense + BM25 + catalog), optionally reranked by the teacher.

    The reranker is any :class:`reldistill.rerank.Reranker`: the one given, else the one ``reranker_loader``
    loads from ``teacher_dir`` on first use (the composition root, ``reldistill.workflow.compose``, passes
    the teacher's); this package never names a concrete model class.
    """

    def __init__(self, dense: DenseIndex, bm25: BM25Index, catalog: Catalog, student, reranker: Reranker | None = None,
                 config: SearchConfig | None = None, name: str = "pipeline", teacher_dir: Path | None = None,
                 student_id: str | None = None, reranker_loader: RerankerLoader | None = None, *,
                 runtime: Runtime | None = None):
        self.dense, self.bm25, self.catalog, self.student = dense, bm25, catalog, student
        # the process's runtime settings (the students it loads): given, else the student's own
        self.runtime = runtime or getattr(student, "reldistill_runtime", None) or Runtime()
        self._reranker = reranker
        self.reranker_loader = reranker_loader  # loads the reranker of teacher_dir when none was given
        self.config = config or SearchConfig()
        self.name = name
        self.teacher_dir = teacher_dir
        self.student_id = student_id or dense.model
        self.index_dir: Path | None = None
        self.default_mode = "hybrid"  # the mode a caller gets when it names none (the run's serving.json sets it)
        self.query_vectors: dict[str, np.ndarray] | None = None  # set to {} to encode each query once (eval)
        self._lock = threading.Lock()
        self._teacher_of: SearchPipeline | None = None  # with_student copies load the teacher through their source
        self.query_encoder = None  # every query's vector comes from here: search, serve and eval alike
        self.student_calibration = None  # the student's Calibration (calibration.json beside it), set by the loaders
        if student is not None:
            # the student's own runtime (the one it was loaded with), else the pipeline's
            self.query_encoder = query_encoder(student, runtime=getattr(student, "reldistill_runtime", None) or runtime)
            dim = int(student.get_embedding_dimension())
            if dim != dense.dim:
                raise UserError(f"the student gives {dim}-dimensional vectors but the index holds {dense.dim} — "
                                "use the student the index was built with, or rebuild the index.")

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, student=None, reranker: Reranker | None = None,
                 config: SearchConfig | None = None, name: str | None = None,
                 reranker_loader: RerankerLoader | None = None, *, runtime: Runtime | None = None) -> SearchPipeline:
        """Load ``<run>/index`` with its student (the one recorded in the manifest unless given) and its teacher's
        folder, which ``reranker_loader`` loads on first rerank (unless ``reranker`` is given); ``runtime``: how the
        student runs (default the library's)."""
        index_dir = index_dir_of(run_dir)
        repair_run(index_dir.parent)  # a swap or commit cut short by a kill is finished before anything is read
        if not index_dir.is_dir():
            raise UserError(f"{index_dir} does not exist — build it with `reldistill index build --run {index_dir.parent}`.")
        m = read_index_manifest(index_dir)
        if student is None:
            student = run_path(index_dir.parent, m["student_path"]) if m.get("student_path") else default_student(index_dir.parent)
            if not Path(str(student)).exists() and Path(str(student)).is_absolute():
                student = default_student(index_dir.parent)
        expect_model = None
        if isinstance(student, (str, Path)):
            expect_model = model_identity(student)
        dense = DenseIndex.load(index_dir, expect_model=expect_model, expect_dim=None)
        model = load_student(str(student), runtime=runtime) if isinstance(student, (str, Path)) else student
        dense_dim = int(model.get_embedding_dimension())
        if dense_dim != dense.dim:
            raise UserError(f"the index in {index_dir} holds {dense.dim}-dimensional vectors but the student gives "
                            f"{dense_dim} — rebuild the index with this student or use the one it was built with.")
        teacher_dir = run_of_index(index_dir).teacher
        pipe = cls(dense, BM25Index.load(index_dir), Catalog.load(index_dir), model, reranker=reranker, config=config,
                   name=name or index_dir.parent.name, teacher_dir=teacher_dir if teacher_dir.is_dir() else None,
                   student_id=dense.model, reranker_loader=reranker_loader, runtime=runtime)
        pipe.index_dir = index_dir
        pipe.student_calibration = _calibration_of(student)
        return pipe

    @classmethod
    def from_data(cls, products: pd.DataFrame, examples: pd.DataFrame | None, student, *, vectors: np.ndarray | None = None,
                  index_config: IndexConfig | None = None, config: SearchConfig | None = None,
                  reranker: Reranker | None = None, teacher_dir: Path | None = None, name: str = "in-memory",
                  reranker_loader: RerankerLoader | None = None, runtime: Runtime | None = None) -> SearchPipeline:
        """A pipeline over ``products`` built in memory (what `index build` writes), e.g. to evaluate other data."""
        ids = products["product_id"].astype(str).tolist()
        texts = products["text"].astype(str).tolist()
        model, dense = _dense_index(student, ids, texts, vectors, index_config or IndexConfig(), runtime)
        pipe = cls(dense, BM25Index.build(ids, texts), Catalog.from_data(products, examples), model, reranker=reranker,
                   config=config, name=name, teacher_dir=teacher_dir, student_id=dense.model, reranker_loader=reranker_loader,
                   runtime=runtime)
        pipe.student_calibration = _calibration_of(student)
        return pipe

    def with_student(self, student, name: str | None = None, kind: str | None = None, *,
                     index_config: IndexConfig | None = None, vectors: np.ndarray | None = None) -> SearchPipeline:
        """The same catalog, BM25 and reranker with another student's dense index (built in memory).

        The index has this pipeline's kind and settings unless ``kind``/``index_config`` say otherwise;
        ``vectors`` (the catalog encoded by ``student``, a row per catalog product) skip the encode, and so
        do the vectors a student folder saved for this catalog.
        """
        ids = self.catalog.frame()["product_id"].astype(str).tolist()
        cfg = index_config or self.dense.config
        if kind is not None and kind != cfg.kind:
            cfg = IndexConfig(kind=kind)
        model, dense = _dense_index(student, ids, [self.catalog.text(p) for p in ids], vectors, cfg, self.runtime)
        pipe = SearchPipeline(dense, self.bm25, self.catalog, model, reranker=self._reranker, config=self.config,
                              name=name or str(student), teacher_dir=self.teacher_dir, student_id=dense.model,
                              reranker_loader=self.reranker_loader, runtime=self.runtime)
        pipe.default_mode = self.default_mode
        pipe._teacher_of = self  # one teacher in memory for both, however many columns rerank
        pipe.student_calibration = _calibration_of(student)
        return pipe

    def with_config(self, config: SearchConfig | None = None, reranker: Reranker | None = None) -> SearchPipeline:
        """The same indexes, student and query-vector memo under other search settings (and/or another reranker)."""
        pipe = SearchPipeline(self.dense, self.bm25, self.catalog, self.student, reranker=reranker or self._reranker,
                              config=config or self.config, name=self.name, teacher_dir=self.teacher_dir,
                              student_id=self.student_id, reranker_loader=self.reranker_loader, runtime=self.runtime)
        pipe.index_dir, pipe.default_mode, pipe.query_vectors = self.index_dir, self.default_mode, self.query_vectors
        pipe.query_encoder = self.query_encoder
        pipe.student_calibration = self.student_calibration
        pipe._teacher_of = None if reranker is not None else self
        return pipe

    # ---- reranker -----------------------------------------------------------------------------
    @property
    def reranker(self) -> Reranker:
        """The reranker given, else the run's teacher through ``reranker_loader`` (loaded on first use)."""
        with self._lock:  # concurrent first requests load the teacher once
            return self._load_reranker()

    def _load_reranker(self) -> Reranker:
        if self._reranker is None and self._teacher_of is not None:
            self._reranker = self._teacher_of.reranker
        if self._reranker is None:
            if self.teacher_dir is None:
                raise UserError("mode 'rerank' needs a teacher: this run has no teacher/ — train one or pass a reranker.")
            if self.reranker_loader is None:
                raise UserError("mode 'rerank' needs a reranker: this pipeline was built without one — pass reranker= "
                                "or reranker_loader= (reldistill.workflow.compose.run_pipeline passes the run's teacher).")
            self._reranker = self.reranker_loader(self.teacher_dir)
        return self._reranker

    @property
    def has_reranker(self) -> bool:
        """A reranker was given, or the run's teacher can be loaded (its folder and a loader are known)."""
        return self._reranker is not None or (self.teacher_dir is not None and self.reranker_loader is not None)

    # ---- search -------------------------------------------------------------------------------
    def _check(self, mode: str, k: int) -> None:
        if mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        if not isinstance(k, int) or not 1 <= k <= self.config.max_k:
            raise UserError(f"k must be between 1 and {self.config.max_k}, got {k!r}.")

    def _encode(self, queries: list[str]) -> np.ndarray:
        """Query vectors through the student's one-query encoder (each query alone: what a request gets)."""
        memo = self.query_vectors
        if memo is None:
            return self.query_encoder.encode(queries)
        todo = list(dict.fromkeys(q for q in queries if q not in memo))
        if todo:
            memo.update(zip(todo, self.query_encoder.encode(todo)))
        return np.stack([memo[q] for q in queries])

    def search(self, query: str, mode: str | None = None, k: int = 10, rerank_k: int | None = None,
               min_score: float | None = None) -> SearchResponse:
        """Search one query; see the module docstring for what each result carries.

        ``min_score`` (a probability) keeps the results whose calibrated P(Exact) is at least that; a
        model without a calibration cannot be thresholded (UserError)."""
        query = check_query(query)
        mode = mode or self.default_mode
        self._check(mode, k)
        if min_score is not None and not 0.0 <= float(min_score) <= 1.0:
            raise UserError(f"min_score is a probability between 0 and 1, got {min_score!r}.")
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        depth = max(self.config.depth, k, rerank_k or 0)
        bm25 = dense = qv = None
        if mode != "dense":
            t = time.perf_counter()
            ids, sc = self.bm25.search([query], depth)
            bm25 = list(zip(ids[0], sc[0]))
            timings["bm25_ms"] = _ms(t)
        if mode != "bm25":
            t = time.perf_counter()
            qv = self._encode([query])
            timings["encode_ms"] = _ms(t)
            t = time.perf_counter()
            ids, sc = self.dense.search(qv, depth)
            dense = list(zip(ids[0], sc[0]))
            timings["dense_ms"] = _ms(t)
        teacher_p: dict[str, tuple[float, float | None]] = {}
        ranked, ranks = self._combine(query, mode, bm25, dense, k, rerank_k, timings, teacher_p)
        probs = teacher_p if mode == "rerank" else self._student_probabilities(query, qv, [p for p, _ in ranked[:k]])
        hits = []
        for pos, (pid, score) in enumerate(ranked[:k], start=1):
            meta = self.catalog.get(pid) or {"title": "", "brand": ""}
            pe, pes = probs.get(pid, (None, None))
            hits.append(SearchHit(pid, meta["title"], meta["brand"], float(score), pos,
                                  **{f"{s}_rank": ranks[s].get(pid) for s in ("bm25", "dense", "fused", "rerank")},
                                  label=self.catalog.label(query, pid), p_exact=pe, p_exact_or_substitute=pes))
        if min_score is not None:
            hits = self._threshold(hits, float(min_score), mode)
        timings["total_ms"] = _ms(t0)
        return SearchResponse(query, mode, k, hits, timings, judged=self.catalog.is_judged(query))

    def _student_probabilities(self, query: str, qv: np.ndarray | None, pids: list[str]) -> dict[str, tuple[float, float]]:
        """{product: (P(Exact), P(E or S))} from the student's calibration of cosine(query, product); {} without one."""
        cal = self.student_calibration
        pids = [p for p in pids if p in self.dense]
        if cal is None or not pids:
            return {}
        if qv is None:
            qv = self._encode([query])
        cos = np.stack([self.dense.vector(p) for p in pids]).astype(np.float64) @ np.asarray(qv, dtype=np.float64)[0]
        pr = cal.probabilities(cos)
        return {p: (float(a), float(b)) for p, a, b in zip(pids, pr["p_exact"], pr["p_exact_or_substitute"])}

    @staticmethod
    def _threshold(hits: list[SearchHit], min_score: float, mode: str) -> list[SearchHit]:
        if any(h.p_exact is None for h in hits):
            who = "teacher" if mode == "rerank" else "student"
            raise UserError(f"min_score needs calibrated probabilities, and this {who} has no calibration.json — "
                            "fit one with `reldistill calibrate --run RUN`.")
        return [h for h in hits if h.p_exact >= min_score]

    def _combine(self, query: str, mode: str, bm25, dense, k: int, rerank_k: int | None, timings: dict,
                 teacher_p: dict | None = None):
        ranks: dict[str, dict[str, int]] = {s: {} for s in ("bm25", "dense", "fused", "rerank")}
        if bm25 is not None:
            ranks["bm25"] = {p: i for i, (p, _) in enumerate(bm25, start=1)}
        if dense is not None:
            ranks["dense"] = {p: i for i, (p, _) in enumerate(dense, start=1)}
        if mode == "bm25":
            return bm25, ranks
        if mode == "dense":
            return dense, ranks
        t = time.perf_counter()
        fused = rrf_fuse({"bm25": bm25, "dense": dense}, k=self.config.rrf_k, weights=self.config.weights,
                         depth=self.config.depth)
        ranks["fused"] = {p: i for i, (p, _) in enumerate(fused, start=1)}
        timings["fuse_ms"] = _ms(t)
        if mode == "hybrid":
            return fused, ranks
        t = time.perf_counter()
        depth = max(rerank_k or self.config.rerank_k, k)
        pool = [(p, self.catalog.text(p)) for p, _ in fused[:depth] if p in self.catalog]
        reranked = self.reranker.rerank(query, pool, top_k=None)
        ranked = [(r.id, r.score) for r in reranked]
        if teacher_p is not None:
            teacher_p.update({r.id: (r.p_exact, r.p_exact_or_substitute) for r in reranked if r.p_exact is not None})
        if self.config.rerank_weight is not None:  # blend: RRF of the first-stage order and the teacher's
            ranked = rrf_fuse({"first": [p for p, _ in pool], "teacher": ranked}, k=self.config.rrf_k,
                              weights={"first": 1.0, "teacher": self.config.rerank_weight})
        ranks["rerank"] = {p: i for i, (p, _) in enumerate(ranked, start=1)}
        timings["rerank_ms"] = _ms(t)
        return ranked, ranks

    def search_many(self, queries: Sequence[str], mode: str | None = None, k: int = 100,
                    rerank_k: int | None = None) -> list[list[tuple[str, float]]]:
        """Ranked (product_id, score) lists, one per query (batched BM25 and query encoding) — for evaluation.

        Each list is what :meth:`search` returns for that query with the same mode, k and rerank_k.
        """
        queries = [check_query(q) for q in queries]
        mode = mode or self.default_mode
        if mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        if k < 1:
            raise UserError(f"k must be at least 1, got {k}.")
        if not queries:
            return []
        depth = max(self.config.depth, k, rerank_k or 0)
        bm = self.bm25.search(queries, depth) if mode != "dense" else None
        de = self.dense.search(self._encode(queries), depth) if mode != "bm25" else None
        out = []
        for i, q in enumerate(queries):
            b = list(zip(bm[0][i], bm[1][i])) if bm else None
            d = list(zip(de[0][i], de[1][i])) if de else None
            ranked, _ = self._combine(q, mode, b, d, k, rerank_k, {})
            out.append([(p, float(s)) for p, s in ranked[:k]])
        return out

    # ---- catalog updates ----------------------------------------------------------------------
    def add_products(self, products: pd.DataFrame) -> None:
        """Add or update products (product_id, text, optional title/brand/color): searchable at once, no rebuild."""
        if "product_id" not in products.columns or "text" not in products.columns:
            raise UserError("added products need 'product_id' and 'text' columns.")
        ids = products["product_id"].astype(str).tolist()
        texts = products["text"].astype(str).tolist()
        self.dense.add(ids, encode_documents(self.student, texts))
        self.bm25.add(ids, texts)
        self.catalog.add(products)

    def remove_products(self, product_ids: Sequence[str]) -> int:
        n = self.dense.remove(product_ids)
        self.bm25.remove(product_ids)
        self.catalog.remove(product_ids)
        return n

    def similar(self, product_id: str, k: int = 10) -> list[SearchHit]:
        """Item-to-item neighbours of a product through the dense index (the product itself excluded)."""
        if product_id not in self.dense:
            raise KeyError(product_id)
        ids, sc = self.dense.search(self.dense.vector(product_id)[None, :], k + 1)
        hits = []
        for pid, s in zip(ids[0], sc[0]):
            if pid == product_id or len(hits) == k:
                continue
            meta = self.catalog.get(pid) or {"title": "", "brand": ""}
            hits.append(SearchHit(pid, meta["title"], meta["brand"], float(s), len(hits) + 1, dense_rank=len(hits) + 1))
        return hits

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "products": len(self.catalog), "dense_vectors": len(self.dense),
                "dense_kind": self.dense.kind, "dim": self.dense.dim, "student": self.student_id,
                "bm25_documents": len(self.bm25), "judged_queries": len(self.catalog.labels),
                "reranker": getattr(self._reranker, "name", None) or ("teacher (lazy)" if self.teacher_dir and self.reranker_loader else None)}


def _dense_index(student, ids: list[str], texts: list[str], vectors: np.ndarray | None,
                 cfg: IndexConfig, runtime: Runtime | None = None) -> tuple[Any, DenseIndex]:
    """(loaded student, its DenseIndex of the catalog): given vectors, else the student folder's saved ones, else encoded."""
    named = isinstance(student, (str, Path))
    model = load_student(str(student), runtime=runtime) if named else student
    if vectors is None and named and Path(str(student)).is_dir():
        vectors = load_vectors(student, ids, texts, runtime=runtime or getattr(model, "reldistill_runtime", None))
    emb = vectors if vectors is not None else encode_catalog(model, ids, texts, batch_size=cfg.batch_size)
    sid = model_identity(student) if named else None
    return model, DenseIndex.build(emb, ids, kind=cfg.kind, model=sid, config=cfg)


def _calibration_of(student):
    """The calibration saved beside a student folder, else one set on a loaded model (``reldistill_calibration``)."""
    if isinstance(student, (str, Path)):
        return load_calibration(student) if Path(str(student)).is_dir() else None
    return getattr(student, "reldistill_calibration", None)


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000.0, 3)
