"""The served configuration of a run: ``<run>/serving.json``, chosen by `reldistill eval` on dev nDCG@10.

It names the mode (bm25 | dense | hybrid | rerank) and the search settings it was chosen with (RRF
weights, rerank_k); `reldistill search` without ``--mode``, `reldistill serve` and the web page's
default column use it. The dev figures that chose it are kept beside it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from reldistill.artifacts import read_json, write_json
from reldistill.errors import UserError
from reldistill.recipe.retrieval import MODES, SearchConfig
from reldistill.run_layout import RunDir, repair_run

@dataclasses.dataclass
class Serving:
    """The mode and search settings a run serves (``weights``/``rerank_k`` override the recipe's ``search:``)."""

    mode: str
    weights: dict[str, float] = dataclasses.field(default_factory=lambda: {"bm25": 1.0, "dense": 1.0})
    rerank_k: int | None = None
    rerank_weight: float | None = None  # RRF weight of the teacher's order against the first stage's (None: teacher alone)
    chosen_on: dict[str, Any] = dataclasses.field(default_factory=dict)  # split, queries, figures, rule
    # when the served mode is not rerank: the best rerank on dev (rerank_k, rerank_weight, its dev figure), which
    # `mode=rerank` requests get instead of the recipe's search.rerank_k / rerank_weight
    rerank: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"serving.json names mode {self.mode!r}; it must be one of {', '.join(MODES)} — rerun `reldistill eval`.")

    @property
    def name(self) -> str:
        """A short label, e.g. ``hybrid(bm25=1,dense=2)+rerank@20``."""
        if self.mode in ("bm25", "dense"):
            return self.mode
        w = ",".join(f"{k}={v:g}" for k, v in sorted(self.weights.items()))
        if self.mode != "rerank":
            return f"hybrid({w})"
        blend = "" if self.rerank_weight is None else f"(w={self.rerank_weight:g})"
        return f"hybrid({w})+rerank@{self.rerank_k}{blend}"

    def search_config(self, base: SearchConfig) -> SearchConfig:
        """``base`` with this choice's weights, rerank_k and rerank_weight (for a non-rerank choice: the dev-best rerank's)."""
        if self.mode == "rerank":
            k, w = self.rerank_k or base.rerank_k, self.rerank_weight
        elif self.rerank:
            k, w = int(self.rerank["rerank_k"]), self.rerank.get("rerank_weight")
        else:
            k, w = self.rerank_k or base.rerank_k, base.rerank_weight
        return dataclasses.replace(base, weights=dict(self.weights), rerank_k=k, rerank_weight=w)


def serving_path(run_dir: str | Path) -> Path:
    return RunDir(run_dir, check=False).serving_json


def write_serving(run_dir: str | Path, serving: Serving) -> Path:
    return write_json(serving_path(run_dir), {**dataclasses.asdict(serving), "name": serving.name})


def read_serving(run_dir: str | Path) -> Serving | None:
    """The run's served configuration, or None when eval has not chosen one (or ``run_dir`` is an index folder)."""
    repair_run(run_dir)  # a commit of eval's results cut short by a kill is finished first
    path = serving_path(run_dir)
    if not path.is_file():
        return None
    d = read_json(path)
    if not isinstance(d, dict) or "mode" not in d:
        raise UserError(f"{path} is not a serving configuration — delete it and rerun `reldistill eval`.")
    return Serving(mode=d["mode"], weights=dict(d.get("weights") or {"bm25": 1.0, "dense": 1.0}),
                   rerank_k=d.get("rerank_k"),
                   rerank_weight=d.get("rerank_weight"), chosen_on=d.get("chosen_on") or {}, rerank=d.get("rerank"))
