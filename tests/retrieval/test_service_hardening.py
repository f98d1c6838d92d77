"""Service hardening (issue 16, items 9-11): each test failed on the service before its fix.

Rerank work bounded per request and refused at once when busy; a timed-out rerank stops between
batches; a failed teacher load is remembered and answered with a generic 503; a trusted-Host
allow-list; a non-loopback bind without a key refused; a chunked body over the limit gets 413;
`--compare` with a student shares the teacher.
"""

import logging
import socket
import threading
import time
from functools import partial

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import assert_user_error
from reldistill.recipe.retrieval import ServeConfig
from reldistill.retrieval.pipeline import SearchPipeline
from reldistill.retrieval.service import create_app
from reldistill.teacher.rerank import TeacherReranker
from reldistill.workflow.compose import teacher_reranker
from tests.retrieval_testkit import FakeReranker, build_tiny_student, live_server, small_run, torch_threads
from tests.conftest import TEST_RUNTIME

LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def pipe(tmp_path_factory, esci_dir):
    with torch_threads(1):
        yield SearchPipeline.from_run(small_run(tmp_path_factory, esci_dir)[0], reranker=FakeReranker(), runtime=TEST_RUNTIME)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    from tests.builders.tiny_teacher import build_tiny_teacher

    return build_tiny_teacher(tmp_path_factory.mktemp("tiny-teacher") / "teacher")


def _bare(pipe, teacher_dir=None) -> SearchPipeline:
    """The shared index pieces with no reranker given (the teacher, if any, loads lazily through the composition
    root's loader, as `reldistill serve` wires it)."""
    return SearchPipeline(pipe.dense, pipe.bm25, pipe.catalog, pipe.student, teacher_dir=teacher_dir, name="main",
                          reranker_loader=partial(teacher_reranker, runtime=TEST_RUNTIME), runtime=TEST_RUNTIME)


def _count_loads(monkeypatch) -> list:
    calls = []
    real = TeacherReranker.load.__func__

    def counting(cls, directory, *a, **k):
        calls.append(str(directory))
        return real(cls, directory, *a, **k)

    monkeypatch.setattr(TeacherReranker, "load", classmethod(counting))
    return calls


@pytest.mark.slow
def test_rerank_busy_answers_503_at_once(pipe):
    app = create_app(pipe, ServeConfig(max_concurrent_reranks=1), reranker=FakeReranker(delay_s=1.5))
    with live_server(app) as url:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=httpx.post(url + "/rerank", json={"query": "q", "documents": ["a"]}, timeout=30)))
        t.start()
        time.sleep(0.4)
        t0 = time.perf_counter()
        busy = httpx.post(url + "/rerank", json={"query": "q", "documents": ["b"]}, timeout=30)
        waited = time.perf_counter() - t0
        t.join()
    assert busy.status_code == 503 and busy.headers.get("retry-after") == "1" and waited < 1.0, (busy.text, waited)
    assert first["r"].status_code == 200


def test_rerank_work_is_bounded_by_documents_times_tokens(pipe, tiny_teacher):
    rr = TeacherReranker.load(tiny_teacher, runtime=TEST_RUNTIME)
    c = TestClient(create_app(pipe, ServeConfig(max_rerank_tokens=500), reranker=rr), base_url=LOCAL)
    long_doc = "wireless bluetooth headphones noise cancelling over ear " * 10  # > 64 tokens: capped at max_length
    r = c.post("/rerank", json={"query": "headphones", "documents": [long_doc] * 20})
    assert r.status_code == 413 and "limit is 500" in r.text and "costs 1280 tokens" in r.text, r.text
    ok = c.post("/rerank", json={"query": "headphones", "documents": [long_doc] * 20, "max_tokens_per_doc": 10})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 20


@pytest.mark.slow
def test_timed_out_rerank_stops_between_batches(pipe, tiny_teacher):
    rr = TeacherReranker.load(tiny_teacher, batch_size=1, runtime=TEST_RUNTIME)
    calls = []

    def slowed(forward):
        def slow_forward(*a, **k):
            calls.append(1)
            time.sleep(0.05)
            return forward(*a, **k)
        return slow_forward

    # the full forward and the backbone alone (the shared-prefix path runs the backbone directly)
    for module in (rr.teacher.model, rr.teacher.model.backbone):
        module.forward = slowed(module.forward)
    c = TestClient(create_app(pipe, ServeConfig(rerank_timeout_s=0.5), reranker=rr), base_url=LOCAL)
    r = c.post("/rerank", json={"query": "shoes", "documents": [f"running shoes model {i}" for i in range(80)]})
    assert r.status_code == 504
    time.sleep(1.0)
    seen = len(calls)
    time.sleep(1.0)
    assert len(calls) == seen < 80  # it stopped, well before scoring all 80 documents
    again = c.post("/rerank", json={"query": "shoes", "documents": ["running shoes"]})
    assert again.status_code == 200  # and its slot was freed


def test_failed_teacher_load_is_remembered_and_not_leaked(pipe, tmp_path, monkeypatch, caplog):
    broken = tmp_path / "secret-place" / "teacher"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    loads = _count_loads(monkeypatch)
    c = TestClient(create_app(_bare(pipe, broken)), base_url=LOCAL)
    with caplog.at_level(logging.ERROR):
        answers = [c.post("/rerank", json={"query": "q", "documents": ["a"]}),
                   c.post("/rerank", json={"query": "q", "documents": ["a"]}),
                   c.get("/search", params={"q": "shoes", "mode": "rerank"})]
    for r in answers:
        assert r.status_code == 503 and r.json() == {"detail": "the reranker is unavailable (see the server log)"}, r.text
    assert len(loads) == 1  # not retried per request
    assert "secret-place" in caplog.text  # the detail goes to the log only
    assert c.get("/search", params={"q": "shoes", "mode": "hybrid"}).status_code == 200  # search lives on


@pytest.mark.parametrize("host,status", [("127.0.0.1:8000", 200), ("localhost", 200), ("[::1]:8000", 200),
                                         ("LOCALHOST:1", 200), ("evil.example", 400), ("127.0.0.1.evil.example:8000", 400),
                                         ("testserver", 400), ("", 400)])
def test_trusted_host_allow_list(pipe, host, status):
    c = TestClient(create_app(pipe, reranker=FakeReranker()), base_url=LOCAL)
    r = c.get("/search", params={"q": "shoes", "mode": "rerank"}, headers={"host": host})
    assert r.status_code == status, (host, r.text)
    if status == 400:
        assert r.json() == {"detail": "invalid Host header"}
    anyhost = TestClient(create_app(pipe, ServeConfig(trusted_hosts=["*"]), reranker=FakeReranker()))
    assert anyhost.get("/health", headers={"host": host or "x"}).status_code == 200


@pytest.mark.slow
def test_non_loopback_bind_without_key_is_refused(cli, tmp_path):
    proc = cli("serve", "--run", tmp_path / "no-run", "--host", "0.0.0.0", timeout=120)
    assert_user_error(proc, "binding 0.0.0.0", "without an API key", "--allow-remote-without-key")
    allowed = cli("serve", "--run", tmp_path / "no-run", "--host", "0.0.0.0", "--allow-remote-without-key", timeout=120)
    assert_user_error(allowed, "does not exist")  # past the exposure check: the missing index is the next error


def test_chunked_body_over_the_limit_gets_413(pipe):
    app = create_app(pipe, ServeConfig(max_body_bytes=2000), reranker=FakeReranker())
    with live_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        body = b'{"query": "q", "documents": ["' + b"a" * 5000 + b'"]}'
        head = (f"POST /rerank HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000]) for i in range(0, len(body), 1000))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head + chunks + b"0\r\n\r\n")
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.split(b" ")[1] == b"413", reply[:300]
        small = b'{"query": "q", "documents": ["a b"]}'
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.split(b" ")[1] == b"200" and b'"relevance_score"' in reply, reply[:300]


def test_compare_with_a_student_loads_the_teacher_once(pipe, tiny_teacher, tmp_path, monkeypatch):
    loads = _count_loads(monkeypatch)
    main = _bare(pipe, tiny_teacher)
    with torch_threads(1):
        other = main.with_student(str(build_tiny_student(tmp_path / "student")), name="tiny")
    c = TestClient(create_app(main, compare=other), base_url=LOCAL)
    for name in ("main", "compare", "main", "compare"):
        r = c.get("/search", params={"q": "shoes", "mode": "rerank", "k": 3, "pipeline": name})
        assert r.status_code == 200 and [h["rerank_rank"] for h in r.json()["results"]] == [1, 2, 3], r.text
    assert loads == [str(tiny_teacher)]
