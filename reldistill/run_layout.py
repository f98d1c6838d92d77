"""The run directory's layout: every path under a run (what ``--run`` takes), named in one place.

::

    <run>/data/                  data check (manifest: the data's stats)
    <run>/teacher/               LoRA cross-encoder (teacher train, or the bundled one)
    <run>/candidates/            candidates.parquet: mined (query, product) pairs to label
    <run>/scores/                scores.parquet: the teacher's scores of the candidates
    <run>/student/               distilled student (sentence-transformers folder)
    <run>/student-human/         the human-labels-only student
    <run>/index/                 FAISS + BM25 + products
    <run>/eval/                  TREC runs, plots, the eval cache, other data's reports (eval/other/)
    <run>/export/                teacher-labelled data for FlagEmbedding / sentence-transformers
    <run>/report.json, report.md the evaluation on the run's own data
    <run>/serving.json           the served configuration, chosen on dev
    <run>/pipeline.json          the pipeline's stage records
    <run>/.index-cache/          catalog vectors encoded so far (resumable index build)

Each stage directory holds a ``manifest.json`` written last; a stage is finished when it exists.
Core and every stage take their run paths from here.
"""

from __future__ import annotations

import re
from pathlib import Path

from reldistill.artifacts import MANIFEST, recover_swaps
from reldistill.errors import UserError

STAGE_DIRS = ("data", "teacher", "candidates", "scores", "student", "student-human", "index", "eval", "export")
CANDIDATES_FILE = "candidates.parquet"
SCORES_FILE = "scores.parquet"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SERVING_FILE = "serving.json"
STATE_FILE = "pipeline.json"
INDEX_CACHE = ".index-cache"
INDEX_MARKER = "dense.json"  # a folder holding it is an index folder


def safe_name(name: str) -> str:
    """``name`` as a file name: runs of other characters than letters, digits, ``._-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class RunDir:
    """One run directory; ``RunDir(root).student`` etc. are the paths of its parts.

    ``check=False`` only names paths (no existence check, no recovery of interrupted swaps).
    """

    def __init__(self, root: str | Path, create: bool = False, check: bool = True):
        self.root = Path(root)
        if not check:
            return
        recover_swaps(self.root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise UserError(f"run directory {self.root} does not exist — create it with `reldistill demo` or pass an existing --run.")
        for stage in STAGE_DIRS:
            recover_swaps(self.root / stage)

    def stage_dir(self, stage: str) -> Path:
        if stage not in STAGE_DIRS:
            raise KeyError(stage)
        return self.root / stage

    data = property(lambda self: self.root / "data")
    teacher = property(lambda self: self.root / "teacher")
    candidates = property(lambda self: self.root / "candidates")
    scores = property(lambda self: self.root / "scores")
    student = property(lambda self: self.root / "student")
    student_human = property(lambda self: self.root / "student-human")
    index = property(lambda self: self.root / "index")
    eval = property(lambda self: self.root / "eval")
    export = property(lambda self: self.root / "export")
    candidates_file = property(lambda self: self.candidates / CANDIDATES_FILE)
    scores_file = property(lambda self: self.scores / SCORES_FILE)
    report_json = property(lambda self: self.root / REPORT_JSON)
    report_md = property(lambda self: self.root / REPORT_MD)
    serving_json = property(lambda self: self.root / SERVING_FILE)
    state_json = property(lambda self: self.root / STATE_FILE)
    index_cache = property(lambda self: self.root / INDEX_CACHE)
    eval_cache = property(lambda self: self.eval / "cache")

    def other_eval(self, data_path: str | Path, split: str) -> Path:
        """Where an evaluation on other data than the run's goes: ``eval/other/<data name>-<split>/``."""
        return self.eval / "other" / safe_name(f"{Path(data_path).resolve().name}-{split}")

    def done(self, stage: str) -> bool:
        """A stage is finished when its directory holds a manifest (written last)."""
        return (self.stage_dir(stage) / MANIFEST).is_file()


def index_dir_of(path: str | Path) -> Path:
    """``<run>/index`` for a run directory, or the path itself when it already is an index directory."""
    p = Path(path)
    return p if p.name == "index" or (p / INDEX_MARKER).is_file() else p / "index"


def run_of_index(index_dir: str | Path) -> RunDir:
    """The run an index folder belongs to (its parent), naming paths only."""
    return RunDir(Path(index_dir).parent, check=False)
