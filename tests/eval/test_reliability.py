"""Issue 24: no command overwrites what it did not make, a run is self-contained, the server cannot be starved.

Each test failed on main 91b1b75 (the issue's items 1-8 and its low items); kills use the crash-injection
pattern of test_no_data_loss (an ``os.replace`` that SIGKILLs its own process right after a chosen rename).
CLI cases run in-process through the typer app (a UserError is the one sentence the CLI prints).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from reldistill.artifacts import MANIFEST, check_output_file, staged_commit, write_manifest, write_parquet
from reldistill.errors import UserError
from reldistill.workflow.cli import app
from tests.retrieval_testkit import FakeReranker, build_tiny_student, judged_esci, torch_threads
from tests.conftest import TEST_RUNTIME


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def user_error(*args) -> str:
    """The one sentence the CLI prints for ``reldistill ARGS`` (fails when the command raised anything else)."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(res.exception, UserError), (args, res.output, repr(res.exception))
    return str(res.exception)


@pytest.fixture(scope="module")
def data(esci_dir):
    from reldistill.config import DataConfig
    from reldistill.data import load_esci

    return load_esci(DataConfig(path=str(esci_dir)))


@pytest.fixture(scope="module")
def small_esci(esci_dir, tmp_path_factory) -> Path:
    """8 fully judged queries of the real sample (4 test, 4 train), their products and 100 unjudged ones."""
    return judged_esci(esci_dir, tmp_path_factory.mktemp("esci-small"), n_test=4, n_train=4, min_judged=30, n_other=100)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, small_esci) -> Path:
    """A run as the demo leaves it, small: a tiny student and its index, a teacher, candidates, reports."""
    from reldistill.config import DataConfig
    from reldistill.retrieval.build import build_index

    run = tmp_path_factory.mktemp("reliab") / "run"
    shutil.move(str(build_tiny_student(run / "tmp-student", dim=32)), run / "student")
    shutil.rmtree(run / "tmp-student")
    write_manifest(run / "student", "student", note="tiny")
    with torch_threads(1):
        build_index(run, None, DataConfig(path=str(small_esci)), runtime=TEST_RUNTIME)
    (run / "teacher").mkdir()
    (run / "teacher" / "adapter.bin").write_bytes(b"x" * 10)
    write_manifest(run / "teacher", "teacher")
    pd.DataFrame({"query": ["a"] * 20, "product_id": [f"P{i}" for i in range(20)]}).to_parquet(run / "pairs.parquet")
    write_parquet(run / "candidates" / "candidates.parquet", pd.DataFrame({"query": ["a"], "product_id": ["P"]}))
    write_manifest(run / "candidates", "candidates")
    (run / "report.md").write_text("# report\n")
    (run / "serving.json").write_text(json.dumps({"mode": "hybrid", "chosen_on": {"planted": True}}))
    return run


def copy_run(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


# -- item 1 -------------------------------------------------------------------------------------------------

def test_export_out_onto_another_artifact_is_refused_before_work(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    before = (run / "teacher" / MANIFEST).read_text()
    msg = user_error("distill", "export", "--run", run, "--out", run / "teacher")
    assert "'teacher' artifact" in msg and "refusing to replace it" in msg
    assert (run / "teacher" / MANIFEST).read_text() == before
    (run / "notes.txt").write_text("mine")
    assert "is a file" in user_error("distill", "export", "--run", run, "--out", run / "notes.txt")


# -- item 2 -------------------------------------------------------------------------------------------------

def test_score_and_eval_outputs_refuse_files_they_did_not_write(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    pairs = run / "pairs.parquet"
    score = ("teacher", "score", "-t", run / "teacher", "-p", pairs, "--limit", "2", "-o")
    assert "also an input" in user_error(*score, pairs)
    assert "'candidates' artifact folder" in user_error(*score, run / "candidates" / "candidates.parquet")
    assert "not written by this command" in user_error(*score, run / "report.md")
    assert "is a directory" in user_error(*score, run / "student")
    assert len(pd.read_parquet(pairs)) == 20 and (run / "report.md").read_text() == "# report\n"
    assert not (run / "shards").exists()
    serving = (run / "serving.json").read_text()
    msg = user_error("distill", "eval", "--run", run, "--student", "minilm-l6", "--split", "dev", "--out", run / "serving.json")
    assert "not written by this command" in msg and (run / "serving.json").read_text() == serving


def test_a_file_a_command_wrote_is_its_own_to_replace(tmp_path):
    out = tmp_path / "scores.parquet"
    write_parquet(out, pd.DataFrame({"x": [1]}), kind="teacher-scores")
    check_output_file(out, "teacher-scores")  # a rerun may replace its own output
    with pytest.raises(UserError, match="not written by this command"):
        check_output_file(out, "student-eval")
    check_output_file(out, "student-eval", force=True)


# -- item 3 -------------------------------------------------------------------------------------------------

def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


@pytest.fixture(scope="module")
def tiny_pipe(tiny_run):
    from reldistill.retrieval.pipeline import SearchPipeline

    with torch_threads(1):
        yield SearchPipeline.from_run(tiny_run, reranker=FakeReranker(), runtime=TEST_RUNTIME)


@pytest.mark.slow
def test_idle_connection_flood_leaves_health_and_search_answering(tiny_pipe):
    """300 sockets held open for 20 s (reopened as the server closes them; a third send half a request head):
    /health and /search answer 200 within 1 s throughout, and the server's memory stays bounded."""
    import httpx
    import uvicorn

    from reldistill.recipe.retrieval import ServeConfig
    from reldistill.retrieval.connections import uvicorn_config
    from reldistill.retrieval.service import create_app
    from tests.retrieval_testkit import free_port

    cfg = ServeConfig(port=free_port(), header_timeout_s=3.0)
    server = uvicorn.Server(uvicorn_config(create_app(tiny_pipe, cfg), cfg))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{cfg.port}"
    while not server.started:
        time.sleep(0.05)

    def open_idle(i: int) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", cfg.port))
        s.setblocking(False)
        if i % 3 == 0:
            s.send(b"GET /health HTTP/1.1\r\nHost: 127.0")  # half a request head, never finished
        return s

    socks = [open_idle(i) for i in range(300)]
    rss0, slow, codes, reopened = _rss_mb(), [], set(), 0
    try:
        with httpx.Client(timeout=5) as client:
            t_end = time.monotonic() + 20
            while time.monotonic() < t_end:
                for path in ("/health", "/search?q=shoes&k=5&mode=bm25"):
                    t0 = time.perf_counter()
                    r = client.get(url + path, headers={"Connection": "close"})
                    codes.add(r.status_code)
                    if time.perf_counter() - t0 > 1.0:
                        slow.append((path, time.perf_counter() - t0))
                for i, s in enumerate(socks):  # the attacker holds 300: each one the server closed is opened again
                    try:
                        if s.recv(1) == b"":
                            s.close()
                            socks[i], reopened = open_idle(i), reopened + 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        s.close()
                        socks[i], reopened = open_idle(i), reopened + 1
                time.sleep(0.2)
        rss1 = _rss_mb()
    finally:
        for s in socks:
            s.close()
        server.should_exit = True
        thread.join(timeout=10)
    assert codes == {200} and not slow, (codes, slow)
    assert reopened >= 300  # the server did close idle sockets (evicted at once, or at the header deadline)
    assert rss1 - rss0 < 150, (rss0, rss1)


def test_serve_config_bounds_idle_connections_below_the_connection_limit():
    from reldistill.recipe.retrieval import ServeConfig

    with pytest.raises(UserError, match="max_idle_connections"):
        ServeConfig(max_idle_connections=300)
    with pytest.raises(UserError, match="header_timeout_s"):
        ServeConfig(header_timeout_s=0)


# -- item 4 -------------------------------------------------------------------------------------------------

def test_a_copied_run_uses_its_own_student_or_refuses(tiny_run, tmp_path):
    from reldistill.retrieval.pipeline import SearchPipeline

    m = json.loads((tiny_run / "index" / MANIFEST).read_text())
    assert m["student_path"] == "./student"  # relative to the run
    orig = copy_run(tiny_run, tmp_path / "orig")
    copy = copy_run(orig, tmp_path / "copy")
    shutil.rmtree(orig / "student")  # the original's student is gone: the copy still works with its own
    pipe = SearchPipeline.from_run(copy, runtime=TEST_RUNTIME)
    assert len(pipe.search("shoes", mode="dense", k=3).results) == 3
    shutil.rmtree(copy / "student")  # the copy's retrained student is another model: a stale index is refused
    from tests.builders.tiny_student import build_tiny_student as tiny

    shutil.move(str(tiny(tmp_path / "other", dim=32, seed=7)), copy / "student")
    with pytest.raises(UserError, match="(?i)rebuild|other model|built with"):
        SearchPipeline.from_run(copy, runtime=TEST_RUNTIME)
    legacy = copy_run(tiny_run, tmp_path / "legacy")  # an index written before: an absolute path into another run
    m["student_path"] = str(tmp_path / "orig" / "student")
    (legacy / "index" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(UserError, match="copied or moved"):
        SearchPipeline.from_run(legacy, runtime=TEST_RUNTIME)


# -- item 5 and the low items: one sentence, before any work ---------------------------------------------

def test_bad_inputs_give_one_sentence(tiny_run, tmp_path, small_esci):
    run = copy_run(tiny_run, tmp_path / "run")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (("index", "build", "--run", tmp_path / "r1", "--student", run / "candidates", "--data", small_esci), "'candidates' artifact, not a student"),
        (("index", "build", "--run", tmp_path / "r2", "--student", run / "teacher", "--data", small_esci), "'teacher' artifact, not a student"),
        (("index", "build", "--run", tmp_path / "r3", "--student", tmp_path / "no-model", "--data", small_esci), "does not exist"),
        (("serve", "--run", run, "--compare", run / "candidates"), "'candidates' artifact, not a student"),
        (("distill", "mine", "--run", a_file), "is a file"),
        (("distill", "train", "--run", a_file), "is a file"),
        (("demo", "--run", a_file), "is a file"),
        (("distill", "export", "--run", run, "--out", a_file), "is a file"),
        (("teacher", "score", "-t", run / "teacher", "-p", run / "pairs.parquet", "-o", tmp_path), "is a directory"),
        (("eval", "--run", run / "student"), "'student' artifact, not a run directory"),
        (("distill", "eval", "--run", run, "--student", "minilm-l6", "--split", "nope"), "--split 'nope'"),
        (("serve", "--run", run, "--trusted-host", ""), "--trusted-host must name a host"),
        (("serve", "--run", run, "--api-key-file", tmp_path / "nokey"), "cannot be read"),
        (("serve", "--run", run, "--api-key-file", a_file, "--api-key", "12345678"), "not both"),
    ]
    for args, needle in cases:
        msg = user_error(*args)
        assert needle in msg, (args, msg)
    assert not any((tmp_path / f"r{i}").exists() for i in (1, 2, 3))  # a refused build leaves no empty run


def test_distill_eval_refuses_a_split_before_encoding(tiny_run, tmp_path, monkeypatch):
    import reldistill.student.encode as enc

    monkeypatch.setattr(enc, "encode_documents", lambda *a, **k: pytest.fail("encoded before refusing the split"))
    assert "--split 'nope'" in user_error("distill", "eval", "--run", tiny_run, "--student", "minilm-l6", "--split", "nope")


def test_a_port_in_use_is_refused_before_the_models_load(tiny_run, monkeypatch):
    from reldistill.retrieval.pipeline import SearchPipeline

    monkeypatch.setattr(SearchPipeline, "from_run", classmethod(lambda *a, **k: pytest.fail("loaded before the port check")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert "cannot listen on 127.0.0.1" in user_error("serve", "--run", tiny_run, "--port", port)


def test_api_key_from_a_file_or_the_environment(tmp_path):
    from reldistill.workflow.cli.retrieval import resolve_api_key

    key = tmp_path / "key"
    key.write_text("s3cret-key-123\n")
    assert resolve_api_key(None, key) == "s3cret-key-123" and resolve_api_key("from-env-12", None) == "from-env-12"


def test_rerank_refuses_a_whitespace_query_as_search_does(tiny_pipe):
    from fastapi.testclient import TestClient

    from reldistill.recipe.retrieval import ServeConfig
    from reldistill.retrieval.service import create_app

    c = TestClient(create_app(tiny_pipe, ServeConfig(), reranker=FakeReranker()), base_url="http://127.0.0.1")
    assert c.get("/search", params={"q": "   "}).status_code == 422
    r = c.post("/rerank", json={"query": "   ", "documents": ["a"]})
    assert r.status_code == 422 and "non-space" in r.text


def test_demo_sizing_refuses_data_without_product_text(data):
    import dataclasses

    from reldistill.workflow.sizing import measure

    empty = dataclasses.replace(data, products=data.products.assign(text=""), examples=data.examples.assign(text=""))
    with pytest.raises(UserError, match="train pairs with product text"):
        measure(None, None, empty, None)


DISK_FULL = """
import errno, os, sys
real = os.replace
def replace(a, b):
    if str(b).endswith("index") and ".tmp" in str(a):
        raise OSError(errno.{code}, os.strerror(errno.{code}), str(b))
    return real(a, b)
os.replace = replace
from reldistill.workflow.cli import main
sys.argv = ["reldistill", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_a_full_disk_or_read_only_run_is_one_sentence(tiny_run, small_esci, tmp_path, code):
    run = copy_run(tiny_run, tmp_path / "run")
    before = (run / "index" / MANIFEST).read_text()
    proc = subprocess.run([sys.executable, "-c", DISK_FULL.replace("{code}", code), "index", "build", "--run", str(run),
                           "--data", str(small_esci), "--threads", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert ("disk is full" if code == "ENOSPC" else "read-only") in proc.stderr
    assert (run / "index" / MANIFEST).read_text() == before


# -- item 6 -------------------------------------------------------------------------------------------------

def test_search_finishes_a_half_done_index_or_student_swap(tiny_run, tmp_path):
    from reldistill.retrieval.pipeline import SearchPipeline

    run = copy_run(tiny_run, tmp_path / "run")
    pid = dead_pid()
    os.replace(run / "index", run / f".index.old-{pid}")  # killed between the two renames of a swap
    os.replace(run / "student", run / f".student.old-{pid}")
    pipe = SearchPipeline.from_run(run, runtime=TEST_RUNTIME)
    assert len(pipe.search("shoes", mode="dense", k=3).results) == 3
    assert (run / "index" / MANIFEST).is_file() and (run / "student" / MANIFEST).is_file()
    assert not any(".old-" in p.name for p in run.iterdir())


# -- item 7 -------------------------------------------------------------------------------------------------

KILL_IN_EVAL = """
import os, signal, sys
target, real = sys.argv[1], os.replace
def replace(a, b):
    real(a, b)
    if str(b) == target:
        os.kill(os.getpid(), signal.SIGKILL)  # killed right after report.json of the results was put in place
os.replace = replace
import reldistill.eval as evaluation, reldistill.eval.compare as compare, reldistill.eval.report as report
from reldistill.config import DataConfig
from reldistill.recipe.eval import EvalConfig
from reldistill.retrieval.serving import Serving
from reldistill.run_layout import RunDir

class Evaluation:  # what eval measured, canned: this test is about how it is written
    def __init__(self, *a, **k):
        self.chose, self.serving = True, Serving(mode="bm25", chosen_on={"split": "dev", "new": True})
    def run_all(self):
        return {"_runs": {}, "per_query_ndcg": {"retrieval": {}}, "split": "test", "n_queries": 1,
                "systems": {"bm25": {"nDCG@10": 0.5}}, "task1": {}, "absent": {}, "data": {}}

compare.Evaluation = Evaluation
report.render_markdown, report.findings = (lambda r: "# new report"), (lambda r: [])
report.plot_metric_bars, report.plot_ndcg_deltas = (lambda r, p: (p.write_bytes(b"png"), p)[1]), (lambda r, p: None)
evaluation.evaluate_run(RunDir(sys.argv[2]), DataConfig(path=sys.argv[3]), EvalConfig())
"""


def test_a_kill_inside_evals_commit_leaves_no_mixed_results(tiny_run, tmp_path, small_esci):
    """Killed after the new report.json is in place: the serving.json that goes with it is put in place by the
    next reader (before: the old serving.json stayed beside the new report, undetected)."""
    run = copy_run(tiny_run, tmp_path / "run")
    (run / "report.json").write_text(json.dumps({"planted": True}))
    proc = subprocess.run([sys.executable, "-c", KILL_IN_EVAL, str(run / "report.json"), str(run), str(small_esci)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert "planted" not in (run / "report.json").read_text()
    from reldistill.retrieval.serving import read_serving

    assert read_serving(run).chosen_on == {"split": "dev", "new": True}
    assert (run / "report.md").read_text() == "# new report" and (run / "eval" / MANIFEST).is_file()
    assert not any(p.name.startswith(".commit-") for p in run.iterdir())


def test_an_uncommitted_set_is_dropped_and_a_committed_one_finished(tmp_path):
    from reldistill.artifacts import finish_commits

    for committed in (False, True):
        root = tmp_path / str(committed)
        root.mkdir()
        (root / "a.json").write_text("old")
        stage = root / f".commit-{dead_pid()}.tmp"
        (stage / "eval").mkdir(parents=True)
        (stage / "a.json").write_text("new")
        (stage / "eval" / "b.txt").write_text("new")
        if committed:
            (stage / ".committed").write_text("")
        finish_commits(root)
        assert (root / "a.json").read_text() == ("new" if committed else "old")
        assert (root / "eval" / "b.txt").exists() == committed and not stage.exists()
    with pytest.raises(RuntimeError), staged_commit(tmp_path / "x") as stage:
        (stage / "a.json").write_text("new")
        raise RuntimeError("failed part way")
    assert list((tmp_path / "x").iterdir()) == []


# -- item 8 -------------------------------------------------------------------------------------------------

def test_eval_alone_keeps_the_demos_dev_rerank_size(tiny_run, tmp_path, monkeypatch):
    import reldistill.workflow.cli.eval as eval_cli

    run = copy_run(tiny_run, tmp_path / "run")
    (run / "pipeline.json").write_text(json.dumps({"sizing": {"sizes": {"dev_rerank_queries": 30}}}))
    seen = []
    monkeypatch.setattr(eval_cli, "evaluate_run", lambda rd, data_cfg, cfg, *a, **k: seen.append(cfg.dev_rerank_queries) or {})
    CliRunner().invoke(app, ["eval", "--run", str(run), "--json"])
    CliRunner().invoke(app, ["eval", "--run", str(run), "--json", "--dev-rerank-queries", "12"])
    assert seen == [30, 12]


def test_library_chatter_is_dropped_at_the_cli_edge():
    import logging

    from reldistill.workflow.cli import not_library_chatter

    def rec(name, level):
        return logging.LogRecord(name, level, __file__, 1, "x", None, None)

    assert not not_library_chatter(rec("bm25s", logging.DEBUG))
    assert not not_library_chatter(rec("bitsandbytes.cextension", logging.WARNING))
    assert not_library_chatter(rec("bm25s", logging.WARNING)) and not_library_chatter(rec("reldistill.artifacts", logging.WARNING))
