"""The README as a test subject: its code blocks and commands, and a sandbox laid out like a checkout after
`make demo` (configs/demo-cpu.yaml, data, runs/demo) where every model is a tiny random one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import yaml
from tests.conftest import TEST_RUNTIME

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
# written by `reldistill report`, scripts/production_dryrun.py --doc and scripts/teacher_variants.py --docs: they name the
# commit and CPU of the run they render, so the hand-written pages' rules (no commit hashes, no run talk) do not apply
GENERATED = ("results.md", "benchmarks.md", "recipe.md", "production.md", "teacher-variants.md", "calibration-teachers.md",
             "teacher-class-head.md")
EX = "shopping_queries_dataset_examples.parquet"
PR = "shopping_queries_dataset_products.parquet"


def code_blocks(text: str, lang: str) -> list[tuple[int, str]]:
    """(first line number, code) of every fenced ```lang block of ``text``."""
    out = []
    for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.S | re.M):
        out.append((text[: m.start()].count("\n") + 2, m.group(1)))
    return out


def shell_commands(text: str) -> list[tuple[str, bool]]:
    """Every `reldistill ...` command shown in ``text`` as (command, whole): lines of its bash blocks (continuations
    joined; whole commands, required options included) and inline code spans (which may name a command without
    its required options), each cut at a comment, a pipe or a redirect."""
    found = []
    for _, block in code_blocks(text, "bash"):
        found += [(line, True) for line in block.replace("\\\n", " ").splitlines()]
    found += [(span, False) for span in re.findall(r"`(reldistill [^`]+)`", text)]
    out = []
    for line, whole in found:
        line = re.split(r"\s#\s|\s[|>]\s?", line.strip())[0].strip()
        words = shlex.split(line) if line else []
        if "-m" in words and "reldistill.workflow.cli" in words:  # accelerate launch ... -m reldistill.workflow.cli ARGS
            words = ["reldistill"] + words[words.index("reldistill.workflow.cli") + 1:]
        if words and words[0] == "reldistill":
            out.append((shlex.join(words), whole))
    return out


def write_tiny_esci(src: Path, dst: Path, n_train: int = 10, n_test: int = 4, per_query: int = 12, n_other: int = 120) -> Path:
    """An ESCI-layout directory: a few train and test queries of the real sample with >= 8 judged products
    (``per_query`` of them kept), their products and ``n_other`` unjudged ones."""
    ex = pd.read_parquet(src / EX)
    pr = pd.read_parquet(src / PR)
    ex = ex[ex["product_locale"] == "us"]
    counts = ex.groupby("query_id").size()
    judged = ex[ex["query_id"].isin(counts[counts >= 8].index)].groupby("query_id").head(per_query)
    keep = []
    for split, n in (("train", n_train), ("test", n_test)):
        keep += list(dict.fromkeys(judged.loc[judged["split"] == split, "query_id"]))[:n]
    ex = judged[judged["query_id"].isin(keep)]
    others = pr[~pr["product_id"].isin(ex["product_id"]) & (pr["product_locale"] == "us")].head(n_other)
    pr = pd.concat([pr[pr["product_id"].isin(ex["product_id"])], others])
    dst.mkdir(parents=True, exist_ok=True)
    ex.to_parquet(dst / EX, index=False)
    pr.to_parquet(dst / PR, index=False)
    return dst


def tiny_recipe(base: Path, student: Path) -> dict:
    """configs/demo-cpu.yaml's sections with tiny models and budgets (data: the sandbox's ``data`` folder)."""
    return {
        "data": {"path": "data", "dev_fraction": 0.3, "seed": 1},
        "teacher": {"model": str(base), "head": "mlp", "head_hidden": 16, "lora_r": 4, "lora_alpha": 8,
                    "lora_dropout": 0.0, "max_length": 48},
        "train": {"lr": 1e-3, "epochs": 1, "batch_size": 16, "precision": "fp32", "checkpoint_fraction": 1.0,
                  "log_every": 1, "cpu_threads": 1, "eval_batch_size": 64},
        "score": {"batch_size": 64, "dtype": "fp32"},
        "student": {"backend": "torch", "query_backend": "torch"},
        "distill": {"student": str(student), "bm25_depth": 3, "dense_depth": 3, "unlabeled_depth": 1,
                    "max_unlabeled_queries": 4, "max_steps": 2, "batch_size": 8, "eval_base": False,
                    "max_seq_length": 32},
        "eval": {"base_student": str(student), "dev_rerank_queries": 3, "rerank_k_grid": [5],
                 "rerank_weight_grid": [None], "weight_grid": [1.0], "teacher_batch": 32, "permutations": 50},
        "search": {"rerank_k": 5},
    }


def build_sandbox(root: Path, esci_dir: Path) -> Path:
    """``root`` laid out like a checkout after `make demo`, with tiny random models: configs/demo-cpu.yaml,
    data/ (a slice of the ESCI sample), runs/demo/{teacher, student, index}."""
    import shutil

    from reldistill.config import DataConfig
    from reldistill.retrieval.build import build_index
    from tests.builders.tiny_student import build_tiny_student
    from tests.builders.tiny_teacher import build_tiny_base, build_tiny_teacher

    data = write_tiny_esci(esci_dir, root / "data")
    base = build_tiny_base(root / "models" / "tiny-llama")
    student = build_tiny_student(root / "models" / "tiny-student", dim=32, max_seq_length=32, seed=0)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "demo-cpu.yaml").write_text(yaml.safe_dump(tiny_recipe(base, student)), encoding="utf-8")
    run = root / "runs" / "demo"
    build_tiny_teacher(run / "teacher", seed=0)
    shutil.copytree(student, run / "student")
    build_index(run, str(run / "student"), DataConfig(path=str(data), dev_fraction=0.3, seed=1), runtime=TEST_RUNTIME)
    return root
