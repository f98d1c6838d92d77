"""The guide is tested: README's shape, its Python examples run (tiny models), every `reldistill` command it and
docs/ show parses with the flags shown, the recipe reference matches the dataclasses, and docs/ keeps no run history."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.readme_testkit import DOCS, GENERATED, README, build_sandbox, code_blocks, shell_commands
from tests.conftest import TEST_RUNTIME

JOBS = ("## 1. Train the teacher", "## 2. Distil a student", "## 3. Rerank in your search")


def _pages() -> dict[str, str]:
    """README and every hand-written docs page (the generated ones are checked by test_docs_pages)."""
    pages = {"README.md": README.read_text(encoding="utf-8")}
    pages.update({f"docs/{p.name}": p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")) if p.name not in GENERATED})
    return pages


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_readme_is_a_short_guide_with_the_three_jobs_up_front():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the guide keeps to 250 (move detail to docs/)"
    for job in JOBS:
        assert job in lines, job
        assert lines.index(job) < 120, f"{job!r} starts at line {lines.index(job) + 1}; the jobs must be in the first 120"
    sections = _sections(text)
    for job in (*JOBS, "## 4. Evaluate"):
        body = sections[job]
        py, sh = code_blocks(body, "python"), code_blocks(body, "bash")
        assert py and sh, f"{job}: a copy-paste command and a Python example"
        assert all(len(code.strip().splitlines()) <= 10 for _, code in py), f"{job}: Python examples keep to 10 lines"
    assert "make demo" in sections["## Two commands"] and "make test" in sections["## Two commands"]
    assert "docs/results.md" in sections["## Results"] and "docs/benchmarks.md" in sections["## Results"]


def test_links_resolve():
    for name, text in _pages().items():
        base = README.parent if name == "README.md" else DOCS
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (base / target).exists(), f"{name} links to {target}, which does not exist"


HISTORY = [r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", r"an hour earlier", r"\bprevious session", r"\bearlier run", r"\bwho ran\b",
           r"this session", r"\bthe lead\b", r"\bhelper\b", r"\bengineer", r"fresh clone of", r"shared machine",
           r"load average of \d", r"\bissue \d+"]


@pytest.mark.parametrize("pattern", HISTORY)
def test_no_run_history_in_the_guide(pattern):
    """Git keeps the history: README and the hand-written docs name no commits, runs or who ran what."""
    for name, text in _pages().items():
        hits = [m.group(0) for m in re.finditer(pattern, text, flags=re.I)]
        assert not hits, f"{name}: {hits[:3]} ({pattern})"


def test_every_command_shown_exists_with_its_flags():
    """`reldistill ...` in README and docs/: the command exists and its options parse as `--help` lists them."""
    import typer

    from reldistill.workflow.cli import app

    root = typer.main.get_command(app)
    shown = [(name, *c) for name, text in _pages().items() for c in shell_commands(text)]
    assert len([1 for name, _, whole in shown if name == "README.md" and whole]) >= 10
    for name, command, whole in shown:
        cmd, args = root, shlex.split(command)[1:]
        while hasattr(cmd, "list_commands"):  # a group (typer's own click): walk to the subcommand
            assert args and args[0] in cmd.list_commands(None), f"{name}: `{command}` — no command {args[:1]}"
            cmd, args = cmd.commands[args[0]], args[1:]
        try:
            cmd.make_context(cmd.name, [a for a in args if a != "..."])
        except Exception as e:  # NoSuchOption, MissingParameter, BadParameter ... (unknown options are found first)
            if not whole and type(e).__name__ == "MissingParameter":
                continue  # prose naming a command (`reldistill serve`) need not give its required options
            message = e.format_message() if hasattr(e, "format_message") else repr(e)
            pytest.fail(f"{name}: `{command}` does not parse: {message}")
        assert not hasattr(cmd, "list_commands")


def test_recipe_reference_matches_the_dataclasses():
    from reldistill.recipe.reference import COMMAND, REFERENCE_FILE, missing_help, render_reference

    assert missing_help() == [], "give these recipe fields help (metadata or a trailing comment)"
    page = (DOCS / REFERENCE_FILE).read_text(encoding="utf-8")
    assert page == render_reference(), f"docs/{REFERENCE_FILE} is out of date with the recipe dataclasses: run `{COMMAND}`"


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path_factory, esci_dir, monkeypatch, capsys):
    """Each ```python block of README runs as written, in order, in a checkout-like folder whose models are tiny."""
    from tests.teacher_testkit import one_thread

    root = tmp_path_factory.mktemp("readme")
    with one_thread():
        build_sandbox(root, esci_dir)
        monkeypatch.chdir(root)
        blocks = code_blocks(README.read_text(encoding="utf-8"), "python")
        assert len(blocks) >= 4
        for line, code in blocks:
            try:
                exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
            except Exception as e:  # name the block that failed
                raise AssertionError(f"the README example at line {line} failed: {type(e).__name__}: {e}") from e
        _replay_curl(root)
    out = capsys.readouterr().out
    assert (root / "runs/mine/teacher/manifest.json").is_file() and (root / "runs/mine/student/manifest.json").is_file()
    assert (root / "runs/demo/report.json").is_file() and (root / "runs/demo/serving.json").is_file()
    assert re.search(r"^B0[12] [-\d.]+$", out, flags=re.M), out[-2000:]  # the reranker's ids and scores


def _replay_curl(root):
    """README's `curl .../v1/rerank` (its headers and body as written) against `reldistill serve`'s app on runs/demo."""
    from fastapi.testclient import TestClient

    from reldistill.recipe.retrieval import ServeConfig
    from reldistill.retrieval import create_app
    from reldistill.workflow.compose import run_pipeline

    (_, block), = [b for b in code_blocks(README.read_text(encoding="utf-8"), "bash") if "curl" in b[1]]
    words = shlex.split(block[block.index("curl"):].replace("\\\n", " "))
    url = next(w for w in words if w.startswith("http"))
    headers = dict(words[i + 1].replace("$KEY", "readme-key").split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = json.loads(words[words.index("-d") + 1])
    app = create_app(run_pipeline(root / "runs/demo", runtime=TEST_RUNTIME), ServeConfig(api_key="readme-key"))  # as `reldistill serve`
    with TestClient(app, base_url="http://127.0.0.1") as client:
        resp = client.post(url.removeprefix("http://127.0.0.1:8000"), headers=headers, json=body)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == body["top_n"] and {r["index"] for r in results} <= set(range(len(body["documents"])))
