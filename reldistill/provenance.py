"""What produced an artifact: the command line, the code's commit and the CPU, recorded beside its figures.

Reports and benchmarks carry this block so that a page rendered from them later (``reldistill report``)
can name the command, commit and CPU its numbers come from without anyone typing them in.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from reldistill.precision import cpu_info
from reldistill.settings import Runtime

REPO = Path(__file__).resolve().parents[1]


def git_commit(repo: Path = REPO) -> dict[str, Any]:
    """{"commit": full hash or None, "dirty": whether tracked files differ from it} of the checkout ``repo``."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit.strip() if commit else None, "dirty": bool(status and status.strip())}


def command_line(argv: list[str] | None = None) -> str:
    """This process's command as a user types it (``reldistill ...`` for the CLI however it was started)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("reldistill", "__main__.py"):  # the entry point, or `python -m` of the CLI
        argv[0] = "reldistill"
    elif argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def provenance(argv: list[str] | None = None, runtime: Runtime | None = None) -> dict[str, Any]:
    """{command, env, commit, dirty, cpu, cpu_flags, cores}: what produced the artifact being written (``env``: the
    RELDISTILL_* and thread settings ``runtime`` was resolved from, secrets left out)."""
    cpu = cpu_info()
    return {"command": command_line(argv), "env": dict((runtime or Runtime()).recorded_env), **git_commit(),
            "cpu": cpu["model"], "cpu_flags": cpu["flags"], "cores": os.cpu_count()}
