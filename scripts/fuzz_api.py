#!/usr/bin/env python
"""Fuzz the service's OpenAPI with schemathesis against `reldistill serve` on loopback: no 5xx allowed.

    .venv/bin/python scripts/fuzz_api.py --run runs/demo [--max-examples 50] [--max-time 300]

Runs the schemathesis CLI (examples, coverage and fuzzing phases; checks: not_a_server_error and
response-schema conformance) and exits with its status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_util import require_loopback, serve  # noqa: E402


def fuzz(url: str, max_examples: int, max_time: int | None, checks: str, report_dir: str | None, seed: int) -> int:
    st = Path(sys.executable).with_name("schemathesis")
    cmd = [str(st) if st.exists() else "schemathesis", "run", f"{url}/openapi.json", "--checks", checks,
           "--max-examples", str(max_examples), "--workers", "1", "--seed", str(seed), "--phases", "examples,coverage,fuzzing",
           "--request-timeout", "60", "--generation-database", "none", "--no-color", "--suppress-health-check", "too_slow,filter_too_much"]
    if max_time:
        cmd += ["--max-time", str(max_time)]
    if report_dir:
        cmd += ["--report", "junit", "--report-dir", report_dir]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, env={**os.environ, "NO_COLOR": "1"}).returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory to serve (starts `reldistill serve` on 127.0.0.1)")
    src.add_argument("--url", help="an already running server on loopback")
    ap.add_argument("--max-examples", type=int, default=50)
    ap.add_argument("--max-time", type=int, default=None, help="time budget in seconds for the whole run")
    ap.add_argument("--checks", default="not_a_server_error,response_schema_conformance")
    ap.add_argument("--report-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.run:
        with serve(a.run) as (url, _):
            rc = fuzz(url, a.max_examples, a.max_time, a.checks, a.report_dir, a.seed)
    else:
        rc = fuzz(require_loopback(a.url), a.max_examples, a.max_time, a.checks, a.report_dir, a.seed)
    sys.exit(rc)


if __name__ == "__main__":
    main()
