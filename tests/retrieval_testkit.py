"""Shared helpers for the retrieval tests: a small real-MiniLM index over a slice of the ESCI sample."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.data.esci import EXAMPLES_FILE, PRODUCTS_FILE
from reldistill.rerank import RankedResult
from tests.conftest import TEST_RUNTIME

N_TEST_QUERIES = 3
N_OTHER_PRODUCTS = 150


@contextlib.contextmanager
def torch_threads(n: int):
    """One torch thread: on a shared 2-core machine this is far faster for small batches."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def small_catalog(data, seed: int = 0, n_queries: int = N_TEST_QUERIES, n_other: int = N_OTHER_PRODUCTS):
    """Products judged for a few test queries plus random others; returns (products, test query frame)."""
    test = data.split("test")
    qids = sorted(test["query_id"].unique())[:n_queries]
    tq = test[test["query_id"].isin(qids)]
    judged = set(tq["product_id"])
    rest = data.products[~data.products["product_id"].isin(judged)].sample(n_other, random_state=seed)
    products = pd.concat([data.products[data.products["product_id"].isin(judged)], rest]).reset_index(drop=True)
    return products, tq


def write_small_esci(src: Path, dst: Path, product_ids: set[str]) -> Path:
    """An ESCI-layout directory restricted to ``product_ids`` (for CLI tests that load data themselves)."""
    dst.mkdir(parents=True, exist_ok=True)
    ex = pd.read_parquet(src / EXAMPLES_FILE)
    pr = pd.read_parquet(src / PRODUCTS_FILE)
    ex[ex["product_id"].isin(product_ids)].to_parquet(dst / EXAMPLES_FILE, index=False)
    pr[pr["product_id"].isin(product_ids)].to_parquet(dst / PRODUCTS_FILE, index=False)
    return dst


def judged_esci(src: Path, dst: Path, n_test: int, n_train: int, min_judged: int, n_other: int) -> Path:
    """An ESCI-layout directory of the first ``n_test`` test and ``n_train`` train queries judged at least
    ``min_judged`` times, their products and ``n_other`` unjudged ones."""
    ex, pr = pd.read_parquet(src / EXAMPLES_FILE), pd.read_parquet(src / PRODUCTS_FILE)
    counts = ex.groupby("query_id").size()
    judged = ex[ex["query_id"].isin(counts[counts >= min_judged].index)]
    keep = [q for split, n in (("test", n_test), ("train", n_train))
            for q in list(dict.fromkeys(judged.loc[judged["split"] == split, "query_id"]))[:n]]
    ex = ex[ex["query_id"].isin(keep)]
    pr = pd.concat([pr[pr["product_id"].isin(ex["product_id"])], pr[~pr["product_id"].isin(ex["product_id"])].head(n_other)])
    dst.mkdir(parents=True, exist_ok=True)
    ex.to_parquet(dst / EXAMPLES_FILE, index=False)
    pr.to_parquet(dst / PRODUCTS_FILE, index=False)
    return dst


class FakeReranker:
    """Deterministic reranker for unit tests: score = word overlap with the query, then reversed input order."""

    name = "fake-overlap"

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls = 0

    def rerank(self, query, candidates, top_k=None):
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        q = set(query.lower().split())
        scored = [(len(q & set(str(t).lower().split())) + i / 1000.0, i) for i, (_, t) in enumerate(candidates)]
        order = sorted(scored, key=lambda s: -s[0])[: top_k or len(candidates)]
        return [RankedResult(id=str(candidates[i][0]), score=float(s), rank=r + 1, index=i) for r, (s, i) in enumerate(order)]


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app, port: int | None = None):
    """Run ``app`` under a real uvicorn server on 127.0.0.1 in a thread; yields the base URL."""
    import httpx
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        raise RuntimeError("uvicorn did not start")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


_SMALL_RUNS: dict[str, tuple] = {}


def small_run(tmp_path_factory, esci_dir: Path):
    """(run_dir, data, test query frame): a real-MiniLM index over ~300 products, built once per session."""
    from reldistill.config import DataConfig
    from reldistill.data import load_esci
    from reldistill.retrieval.build import build_index

    if "run" not in _SMALL_RUNS:
        data = load_esci(DataConfig(path=str(esci_dir)))
        products, tq = small_catalog(data)
        run = tmp_path_factory.mktemp("retrieval-run")
        with torch_threads(1):
            build_index(run, "minilm-l6", DataConfig(path=str(esci_dir)), products=products, examples=data.examples, runtime=TEST_RUNTIME)
        _SMALL_RUNS["run"] = (run, data, tq, products)
    return _SMALL_RUNS["run"]


def build_tiny_student(out_dir: Path, dim: int = 32) -> Path:
    """A tiny random sentence-transformers model (see tests.builders.tiny_student)."""
    from tests.builders.tiny_student import build_tiny_student as build

    return build(out_dir, dim=dim, max_seq_length=64)
