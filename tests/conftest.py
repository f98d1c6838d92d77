"""Shared fixtures: the real ESCI sample from ../shared (and a small judged slice of it), a CLI runner, tiny data tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reldistill.settings import Runtime

# Subprocess CLI tests get these through the environment (the CLI resolves its runtime from it); in-process tests pass
# TEST_RUNTIME (or the `runtime` fixture), the same choices as an explicit Runtime.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Students encode through PyTorch unless a test picks a backend (auto would export and time each tiny student).
os.environ.setdefault("RELDISTILL_STUDENT_BACKEND", "torch")
os.environ.setdefault("RELDISTILL_STUDENT_QUERY_BACKEND", "torch")  # the lean one-query path, on PyTorch
# The teacher stays fp32 unless a test asks for int8 (auto would run the int8 gate for each tiny teacher on a CPU without bf16).
os.environ.setdefault("RELDISTILL_TEACHER_INT8", "off")

# What in-process tests run with: the environment above (torch students, no teacher int8, offline hub, the user's
# cache folder and precision settings), resolved once like the CLI does.
# Thread counts are pinned: `cpu_threads: auto` would follow what else this machine runs, and numbers some tests compare
# to 1e-5 (eval against served search, the demo's stored reference) move with the thread count. The auto rule has its
# own tests (tests/teacher/test_cpu_threads.py), with explicit runtimes.
TEST_RUNTIME = Runtime.from_env(threads_pinned=True)

from tests import retrieval_testkit  # noqa: E402 — after TEST_RUNTIME, which it imports from here (a module: either may load first)

REPO = Path(__file__).resolve().parents[1]
ESCI_SAMPLE = REPO.parent / "shared" / "data" / "esci-sample"
ESCI_EXTENDED = REPO.parent / "shared" / "data" / "esci-extended"


@pytest.fixture(scope="session")
def esci_dir() -> Path:
    if not ESCI_SAMPLE.is_dir():
        pytest.fail(f"the ESCI sample is missing at {ESCI_SAMPLE}: clone the repo with ../shared beside it")
    return ESCI_SAMPLE


@pytest.fixture(scope="session")
def extended_dir() -> Path:
    """esci-extended: the default data of the demo and the recipes."""
    if not ESCI_EXTENDED.is_dir():
        pytest.fail(f"esci-extended is missing at {ESCI_EXTENDED}: clone the repo with ../shared beside it")
    return ESCI_EXTENDED


@pytest.fixture(scope="module")
def small_esci(esci_dir, tmp_path_factory) -> Path:
    """4 test + 4 fully judged train queries of the real sample, their products and 150 unjudged ones (the eval
    and bench CLI tests)."""
    return retrieval_testkit.judged_esci(esci_dir, tmp_path_factory.mktemp("esci-small"), n_test=4, n_train=4, min_judged=30, n_other=150)


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `reldistill ARGS` in a subprocess, as a user would; returns the completed process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "reldistill.workflow.cli", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Non-zero exit, one clear line on stderr naming ``needles``, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    err = proc.stderr
    assert "Traceback" not in err, err
    assert "error:" in err, err
    flat = " ".join(err.split())
    for n in needles:
        assert n in flat, f"{n!r} not in {flat!r}"


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def runtime() -> Runtime:
    """The in-process tests' runtime settings (TEST_RUNTIME)."""
    return TEST_RUNTIME
