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

from reldistill.artifacts import MANIFEST, finish_commits, manifest_kind, read_json, recover_swaps
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
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"run directory {self.root} is a file — pass a directory as --run.")
        if self.root.is_dir() and manifest_kind(self.root) is not None:
            raise UserError(f"{self.root} is a {manifest_kind(self.root)!r} artifact, not a run directory — pass the run that holds it.")
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise UserError(f"run directory {self.root} does not exist — create it with `reldistill demo` or pass an existing --run.")
        for stage in STAGE_DIRS:
            recover_swaps(self.root / stage)
        finish_commits(self.root)

    @classmethod
    def for_output(cls, root: str | Path) -> RunDir:
        """An existing run (checked and repaired), or a new one's paths: its folder appears only when a stage
        writes its first artifact, so a command refused before any work leaves no empty run behind."""
        return cls(root) if Path(root).exists() else cls(root, check=False)

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

    def recorded_sizes(self) -> dict:
        """The stage sizes the demo measured for this run (pipeline.json's ``sizing.sizes``), or {} when none."""
        if not self.state_json.is_file():
            return {}
        sizes = (read_json(self.state_json).get("sizing") or {}).get("sizes")
        return sizes if isinstance(sizes, dict) else {}

    def done(self, stage: str) -> bool:
        """A stage is finished when its directory holds a manifest (written last)."""
        return (self.stage_dir(stage) / MANIFEST).is_file()


def run_relative(root: str | Path, path: str) -> str:
    """``path`` as ``./<rel>`` when it lies inside the run ``root`` (a copied or moved run stays whole), else an
    absolute path for a folder elsewhere, or the name as given (a model name)."""
    p = Path(path)
    if not p.exists():
        return str(path)
    try:
        return "./" + p.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(p.resolve())


def run_path(root: str | Path, recorded: str) -> str:
    """A path ``run_relative`` recorded for the run ``root``, usable again; a stage folder of another run (what
    an index built before runs were self-contained records after a copy or move) is a UserError."""
    if recorded.startswith("./"):
        return str(Path(root) / recorded[2:])
    p = Path(recorded)
    if p.is_absolute() and p.name in STAGE_DIRS and p.parent.resolve() != Path(root).resolve():
        raise UserError(f"the index of {root} was built with {p}, a folder of another run (this run was copied or moved) — "
                        f"rebuild it with `reldistill index build --run {root}`.")
    return recorded


def repair_run(root: str | Path) -> None:
    """What a reader calls first: undo or finish swaps and commits a kill cut short in the run ``root`` (if it is one)."""
    root = Path(root)
    if root.is_dir() and manifest_kind(root) is None:
        RunDir(root)


def index_dir_of(path: str | Path) -> Path:
    """``<run>/index`` for a run directory, or the path itself when it already is an index directory."""
    p = Path(path)
    return p if p.name == "index" or (p / INDEX_MARKER).is_file() else p / "index"


def run_of_index(index_dir: str | Path) -> RunDir:
    """The run an index folder belongs to (its parent), naming paths only."""
    return RunDir(Path(index_dir).parent, check=False)
