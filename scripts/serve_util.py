"""Start `reldistill serve` on loopback for the load test and the fuzz run (shared by both scripts)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_loopback(url: str) -> str:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        sys.exit(f"error: {url} is not on loopback — these scripts only ever target 127.0.0.1.")
    return url.rstrip("/")


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def serve(run: str, extra: list[str] | None = None, startup_s: float = 300) -> Iterator[tuple[str, int]]:
    """Run `reldistill serve --run RUN` on 127.0.0.1:<free port>; yields (base URL, server pid)."""
    port = free_port()
    cmd = [sys.executable, "-m", "reldistill.workflow.cli", "serve", "--run", run, "--host", "127.0.0.1", "--port", str(port), *(extra or [])]
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + startup_s
        while time.time() < deadline:
            if proc.poll() is not None:
                sys.exit(f"error: the server exited during start-up:\n{proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            sys.exit(f"error: the server did not answer /health within {startup_s:.0f} s")
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
