"""`reldistill index build` / `search` / `serve` as a user runs them: results, bad inputs, kill -9 mid-build.

Subprocesses (a real user's view, ~5-10 s each on a busy 2-core box) are kept to the cases that need
one; the remaining bad inputs go through the same typer app in-process and must raise a UserError.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, assert_user_error, run_cli
from reldistill.workflow.cli import app
from reldistill.data.esci import PRODUCTS_FILE
from reldistill.errors import UserError
from tests.retrieval_testkit import small_catalog, write_small_esci
from tests.conftest import TEST_RUNTIME

ENV = {"HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, esci_dir):
    from reldistill.config import DataConfig
    from reldistill.data import load_esci

    data = load_esci(DataConfig(path=str(esci_dir)))
    products, tq = small_catalog(data, n_queries=2, n_other=30)
    d = write_small_esci(esci_dir, tmp_path_factory.mktemp("esci-small"), set(products["product_id"]))
    return d, tq


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_data):
    run = tmp_path_factory.mktemp("cli-run")
    proc = run_cli("index", "build", "--run", run, "--student", "minilm-l6", "--data", small_data[0], "--threads", "1", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert (run / "index" / "manifest.json").is_file()
    return run


@pytest.mark.slow
def test_search_json_returns_judged_products(built, small_data):
    tq = small_data[1]
    g = tq[tq["query_id"] == tq["query_id"].iloc[0]]
    proc = run_cli("search", g["query"].iloc[0], "--run", built, "--mode", "hybrid", "--k", "10", "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ids = [r["product_id"] for r in out["results"]]
    assert len(ids) == 10 and sum(p in set(g["product_id"]) for p in ids) >= 5
    assert {"product_id", "title", "score", "bm25_rank", "dense_rank", "fused_rank", "rerank_rank"} <= set(out["results"][0])
    table = CliRunner().invoke(app, ["search", g["query"].iloc[0], "--run", str(built), "--mode", "bm25", "--k", "3"])
    assert table.exit_code == 0, table.output
    assert "product_id" in table.output and "(judged query)" in table.output and "bm25_ms" in table.output


def _copy_data(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


@pytest.mark.slow
def test_bad_inputs_give_one_clear_error(built, small_data, tmp_path):
    data = small_data[0]
    dup = _copy_data(data, tmp_path / "dup-esci")  # duplicate product ids in the products file
    pr = pd.read_parquet(dup / PRODUCTS_FILE)
    pd.concat([pr, pr.head(1)]).to_parquet(dup / PRODUCTS_FILE, index=False)
    broken = tmp_path / "broken-run"  # a corrupted FAISS file
    shutil.copytree(built / "index", broken / "index")
    raw = (broken / "index" / "dense.faiss").read_bytes()
    (broken / "index" / "dense.faiss").write_bytes(raw[:1000])
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("index:\n  kind: flat\n  colour: red\n")
    subprocess_cases = [  # the user's view: exit 2, one line, no traceback
        (("search", "shoes", "--run", tmp_path / "nowhere"), ("does not exist",)),
        (("search", "a" * 100_000, "--run", built), ("characters long", "limit is 2,048")),
        (("search", "shoes", "--run", broken), ("corrupted", "rebuild")),
        (("index", "build", "--run", tmp_path / "r6", "--student", "minilm-l6", "--data", dup), ("more than once",)),
    ]
    for args, needles in subprocess_cases:
        assert_user_error(run_cli(*args, env=ENV), *needles)
    assert not (tmp_path / "r6" / "index").exists()  # nothing written under a final name
    in_process = [
        (("search", "   ", "--run", built), "query is empty"),
        (("search", "shoes", "--run", built, "--k", "1000"), "--k must be between 1 and 100"),
        (("search", "shoes", "--run", built, "--k", "5", "--rerank-k", "0"), "--rerank-k must be between 1 and 100"),
        (("search", "shoes", "--run", built, "--mode", "magic"), "--mode must be one of"),
        (("search", "shoes", "--run", built, "--mode", "rerank"), "needs a teacher"),
        (("index", "build", "--run", tmp_path / "r1", "--kind", "lsh", "--data", data), "index.kind must be one of"),
        (("index", "build", "--run", tmp_path / "r2", "--data", data), "no finished student/"),
        (("index", "build", "--run", tmp_path / "r3", "--student", "no-such-student", "--data", data), "no-such-student"),
        (("index", "build", "--run", tmp_path / "r4", "--student", "minilm-l6", "--data", tmp_path / "missing"), "does not exist"),
        (("index", "build", "--run", tmp_path / "r5", "--config", bad_cfg, "--data", data), "index has unknown key(s) colour"),
        (("index", "build", "--run", tmp_path / "r7", "--config", tmp_path / "none.yaml"), "does not exist"),
        (("serve", "--run", built, "--port", "70000"), "serve.port"),
        (("serve", "--run", built, "--api-key", "short"), "api_key must be at least 8"),
        (("serve", "--run", tmp_path / "nowhere"), "does not exist"),
    ]
    runner = CliRunner()
    for args, needle in in_process:
        res = runner.invoke(app, [str(a) for a in args])
        assert isinstance(res.exception, UserError), (args, res.output, res.exception)
        assert needle in str(res.exception), (needle, str(res.exception))
    assert not any((tmp_path / f"r{i}" / "index").exists() for i in range(1, 8))


@pytest.mark.slow
def test_kill_9_mid_build_keeps_previous_index(built, small_data, tmp_path):
    """kill -9 an `index build` part way: the previous index stays loadable; a rerun completes."""
    from reldistill.retrieval.pipeline import SearchPipeline

    run = tmp_path / "run"
    shutil.copytree(built / "index", run / "index")
    before = json.loads((run / "index" / "manifest.json").read_text())
    args = ["index", "build", "--run", str(run), "--student", "minilm-l6", "--data", str(small_data[0]),
            "--kind", "hnsw", "--threads", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "reldistill.workflow.cli", *args], cwd=REPO, env={**os.environ, **ENV},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if any((run / ".index-cache").glob("*")):  # encoding under way
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the build finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    after = json.loads((run / "index" / "manifest.json").read_text())
    assert after == before and after["index_kind"] == "flat"
    pipe = SearchPipeline.from_run(run, runtime=TEST_RUNTIME)  # the previous index still loads and answers
    assert pipe.dense.kind == "flat" and len(pipe.search("shoes", mode="dense", k=3).results) == 3
    rerun = run_cli(*args, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((run / "index" / "manifest.json").read_text())["index_kind"] == "hnsw"
    assert not list((run / ".index-cache").glob("*")) and not list(run.glob(".index.*"))
    assert SearchPipeline.from_run(run, runtime=TEST_RUNTIME).dense.kind == "hnsw"
