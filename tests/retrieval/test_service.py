"""The FastAPI search service: endpoints, validation (422 with a message), hardening, and a live uvicorn server."""

import httpx
import pytest
from fastapi.testclient import TestClient

from reldistill.recipe.retrieval import ServeConfig
from reldistill.retrieval.pipeline import SearchPipeline
from reldistill.retrieval.service import create_app
from tests.retrieval_testkit import FakeReranker, live_server, torch_threads
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def pipe(run):
    with torch_threads(1):
        yield SearchPipeline.from_run(run[0], reranker=FakeReranker(), runtime=TEST_RUNTIME)


@pytest.fixture(scope="module")
def client(pipe):
    return TestClient(create_app(pipe, ServeConfig(), reranker=FakeReranker()), base_url="http://127.0.0.1")


def test_search_returns_judged_products_with_labels(client, run):
    g = run[2][run[2]["query_id"] == run[2]["query_id"].iloc[0]]
    judged = dict(zip(g["product_id"], g["esci_label"]))
    r = client.get("/search", params={"q": g["query"].iloc[0], "k": 10, "mode": "hybrid"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["judged"] and len(body["results"]) == 10
    assert sum(h["product_id"] in judged for h in body["results"]) >= 5
    assert all(h["label"] == judged.get(h["product_id"]) for h in body["results"])
    assert {"bm25_ms", "dense_ms", "fuse_ms", "total_ms"} <= set(body["timings_ms"])
    rr = client.get("/search", params={"q": g["query"].iloc[0], "k": 3, "mode": "rerank"}).json()
    assert [h["rerank_rank"] for h in rr["results"]] == [1, 2, 3]


@pytest.mark.parametrize("params,needle", [
    ({"q": ""}, "at least 1 character"),
    ({"q": "   "}, "non-space"),
    ({"q": "shoes", "k": 1000}, "less than or equal to 100"),
    ({"q": "shoes", "k": 0}, "greater than or equal to 1"),
    ({"q": "shoes", "mode": "magic"}, "bm25"),
    ({"q": "x" * 600}, "at most 512 characters"),
    ({}, "Field required"),
])
def test_validation_errors_are_422_with_a_message(client, params, needle):
    r = client.get("/search", params=params)
    assert r.status_code == 422, r.text
    assert needle in r.text
    assert "x" * 600 not in r.text  # inputs are never echoed back


def test_each_app_validates_with_its_own_configured_limits(pipe, client):
    """The route handlers are module-level functions: an app's ServeConfig still sets its parameters' limits (422 and
    the OpenAPI schema), and another app keeps its own."""
    small = TestClient(create_app(pipe, ServeConfig(max_k=5, max_q_chars=20)), base_url="http://127.0.0.1")
    r = small.get("/search", params={"q": "shoes", "k": 6})
    assert r.status_code == 422 and "less than or equal to 5" in r.text
    assert "at most 20 characters" in small.get("/search", params={"q": "x" * 21}).text
    assert small.get("/search", params={"q": "shoes", "rerank_k": 6}).status_code == 422
    pid = pipe.catalog.frame()["product_id"].iloc[0]
    assert small.get(f"/similar/{pid}", params={"k": 6}).status_code == 422
    spec = small.get("/openapi.json").json()["paths"]["/search"]["get"]["parameters"]
    limits = {p["name"]: p["schema"] for p in spec}
    assert limits["q"]["maxLength"] == 20 and limits["k"]["maximum"] == 5
    assert client.get("/search", params={"q": "shoes", "k": 6}).status_code == 200  # the default app: k up to 100


def test_one_megabyte_query_is_refused_without_echo(client):
    r = client.get("/search", params={"q": "a" * 60000})  # the longest URL an HTTP client will send
    assert r.status_code == 422 and len(r.content) < 2000
    r = client.post("/rerank", json={"query": "a" * (1 << 20), "documents": ["x"]})
    assert r.status_code == 413 and len(r.content) < 2000


def _raw_get(url: str, target: str) -> bytes:
    """Send one raw HTTP/1.1 GET (no client-side URL limits) and return the status line + body."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    chunks = []
    with socket.create_connection((host, int(port)), timeout=30) as s:
        try:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):  # the server answered 4xx and hung up mid-upload
            pass
    return b"".join(chunks)


def test_products_similar_stats_health_docs(client, run):
    pid = run[3]["product_id"].iloc[0]
    p = client.get(f"/products/{pid}").json()
    assert p["product_id"] == pid and p["title"]
    assert client.get("/products/NOPE123").status_code == 404
    assert client.get("/products/..%2F..%2Fetc").status_code in (404, 422)
    sim = client.get(f"/similar/{pid}", params={"k": 4}).json()
    assert len(sim["results"]) == 4 and pid not in [h["product_id"] for h in sim["results"]]
    assert client.get("/similar/NOPE123").status_code == 404
    stats = client.get("/stats").json()
    assert stats["pipelines"]["main"]["products"] == len(run[3]) and "rerank" in stats["modes"]
    assert client.get("/health").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert {"/search", "/rerank", "/products/{product_id}", "/similar/{product_id}", "/stats", "/health"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    assert client.get("/search", params={"q": "shoes", "pipeline": "other"}).status_code == 404


def test_rerank_hosted_api_shape(client):
    body = {"query": "running shoes", "top_n": 2, "return_documents": True,
            "documents": [{"id": "a", "text": "kitchen knife"}, {"id": "b", "text": "red running shoes"},
                          {"id": "c", "text": "shoes rack"}]}
    r = client.post("/rerank", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "fake-overlap"
    assert [x["id"] for x in out["results"]] == ["b", "c"] and [x["index"] for x in out["results"]] == [1, 2]
    assert out["results"][0]["document"] == {"text": "red running shoes"}
    assert out["results"][0]["relevance_score"] >= out["results"][1]["relevance_score"]
    plain = client.post("/rerank", json={"query": "knife", "documents": ["kitchen knife", "shoes"]}).json()
    assert plain["results"][0] == {"index": 0, "id": None, "relevance_score": pytest.approx(1.0), "document": None}
    for bad in ({"query": "", "documents": ["a"]}, {"query": "q", "documents": []}, {"query": "q", "documents": ["a"], "top_n": 0},
                {"query": "q", "documents": [""]}, {"query": "q", "documents": ["a" * 5000]}, {"documents": ["a"]}):
        assert client.post("/rerank", json=bad).status_code == 422, bad
    assert client.post("/rerank", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422


def test_hardening_body_limit_api_key_timeout_cors(pipe):
    app = create_app(pipe, ServeConfig(api_key="s3cret-key", max_body_bytes=2000, rerank_timeout_s=0.2),
                     reranker=FakeReranker(delay_s=2.0))
    c = TestClient(app, base_url="http://127.0.0.1")
    assert c.get("/search", params={"q": "shoes"}).status_code == 401
    assert c.get("/search", params={"q": "shoes"}, headers={"X-API-Key": "wrong-key!"}).status_code == 401
    ok = {"X-API-Key": "s3cret-key"}
    assert c.get("/search", params={"q": "shoes"}, headers=ok).status_code == 200
    assert c.get("/search", params={"q": "shoes"}, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200  # Cohere clients
    assert c.get("/search", params={"q": "shoes"}, headers={"Authorization": "Bearer wrong-key!"}).status_code == 401
    assert c.get("/health").status_code == 200  # liveness needs no key
    big = {"query": "q", "documents": ["word " * 100] * 10}
    r = c.post("/rerank", json=big, headers=ok)
    assert r.status_code == 413 and "larger than 2000 bytes" in r.text
    r = c.post("/rerank", json={"query": "q", "documents": ["a", "b"]}, headers=ok)
    assert r.status_code == 504 and "longer than 0.2 s" in r.text
    r = c.get("/search", params={"q": "shoes"}, headers={**ok, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers  # CORS off by default


def test_internal_errors_do_not_leak(pipe, monkeypatch):
    c = TestClient(create_app(pipe), raise_server_exceptions=False, base_url="http://127.0.0.1")

    def broken(*a, **k):
        raise RuntimeError("secret path /etc/shadow")

    monkeypatch.setattr(pipe, "search", broken)
    r = c.get("/search", params={"q": "shoes"})
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}


def test_search_on_live_uvicorn_server(pipe, run):
    app = create_app(pipe, ServeConfig())
    query = run[2]["query"].iloc[0]
    with live_server(app) as url:
        assert url.startswith("http://127.0.0.1:")
        r = httpx.get(url + "/search", params={"q": query, "k": 5, "mode": "hybrid"}, timeout=30)
        assert r.status_code == 200
        assert len(r.json()["results"]) == 5
        bad = httpx.get(url + "/search", params={"q": "", "k": 5}, timeout=30)
        assert bad.status_code == 422 and "q" in bad.text
        huge = _raw_get(url, "/search?q=" + "a" * (1 << 20))  # a 1 MB query string
        assert huge == b"" or (huge.split(b" ")[1].startswith(b"4") and len(huge) < 2000), huge[:200]
        assert httpx.get(url + "/health", timeout=30).status_code == 200  # and the server lives on
        page = httpx.get(url + "/", timeout=30)
        assert page.status_code == 200 and "reldistill" in page.text
