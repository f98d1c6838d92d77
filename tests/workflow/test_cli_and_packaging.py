"""The CLI as a user runs it, and the installed package layout."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_data_stats_json_reads_files(cli, esci_dir):
    proc = cli("data", "stats", "--data", esci_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert (s["pairs"], s["queries"], s["products"]) == (6651, 1806, 8462)
    assert s["splits"]["train"]["labels"] == {"C": 149, "E": 2992, "I": 709, "S": 1427}
    assert s["splits"]["test"]["labels"] == {"C": 132, "E": 553, "I": 293, "S": 396}
    assert s["product_text_chars"]["p50"] > 0


@pytest.mark.slow
def test_data_stats_table(cli, esci_dir):
    proc = cli("data", "stats", "--data", esci_dir)
    assert proc.returncode == 0 and "6,651 pairs" in proc.stdout


def test_namespaced_imports_only(tmp_path):
    code = ("import importlib.util as u, reldistill.teacher, reldistill.eval, reldistill.retrieval, reldistill.workflow;"
            "print([m for m in ('teacher','student','distill','retrieval','eval','workflow') if u.find_spec(m)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


HEAVY = ("torch", "transformers", "sentence_transformers", "faiss", "fastapi", "uvicorn", "peft", "accelerate",
         "datasets", "onnxruntime", "openvino", "matplotlib", "sklearn", "bm25s", "ranx")


def test_cli_start_loads_no_heavy_library(tmp_path):
    """Every CLI call (a bad flag, --help, a refused input) pays for what the CLI imports before it parses the command
    line: the stage modules it registers must leave torch, transformers, FAISS, FastAPI, … to the commands that run them."""
    code = ("import sys, reldistill.workflow.cli; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"the CLI loads {out.stdout.strip()} at start"


@pytest.mark.slow
def test_commands_check_their_input_before_transformers_loads(tmp_path):
    """The modules a command imports before it checks its flags and files (search, index build, distill train, demo)
    load torch at most; transformers, sentence-transformers and datasets wait for a model to load (~10 s on 2 cores)."""
    mods = ("reldistill.retrieval.pipeline", "reldistill.workflow.compose", "reldistill.distill.train",
            "reldistill.workflow.pipeline")
    late = ("transformers", "sentence_transformers", "datasets", "peft", "accelerate")
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {mods!r}]; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({late!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing the command modules loads {out.stdout.strip()}"


@pytest.mark.slow
def test_wheel_installs_only_reldistill(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)
    (whl,) = tmp_path.glob("reldistill-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(whl).namelist()}
    assert tops == {"reldistill", "reldistill-0.1.0.dist-info"}, tops
    names = zipfile.ZipFile(whl).namelist()
    assert "reldistill/teacher/__init__.py" in names and "reldistill/eval/__init__.py" in names
    assert "reldistill/workflow/cli/__init__.py" in names and "reldistill/workflow/pipeline.py" in names
