"""The composition root of search: a run's `SearchPipeline` wired to its teacher.

Retrieval depends on the `reldistill.rerank.Reranker` protocol only; this module names the concrete
reranker (the teacher's `TeacherReranker`) and hands its loader to the pipeline, which loads the teacher
on the first rerank. `reldistill search`, `reldistill serve` (and its ``--compare`` run) build their
pipelines here, with the runtime their command resolved (``Runtime.from_env``): the student's and the teacher's.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from reldistill.recipe.retrieval import SearchConfig
from reldistill.rerank import Reranker
from reldistill.retrieval.pipeline import SearchPipeline
from reldistill.retrieval.serving import read_serving
from reldistill.settings import Runtime
from reldistill.teacher.rerank import TeacherReranker


def teacher_reranker(teacher_dir: Path, *, runtime: Runtime | None = None) -> Reranker:
    """The teacher in ``teacher_dir`` behind the Reranker protocol (loads the model; ``runtime``: its int8,
    prefix-KV and memo settings, default the library's)."""
    return TeacherReranker.load(teacher_dir, runtime=runtime)


def run_pipeline(run: str | Path, cfg: SearchConfig | None = None, student: str | None = None,
                 name: str | None = None, *, runtime: Runtime | None = None) -> SearchPipeline:
    """The run's pipeline under ``cfg`` (the recipe's ``search:``) with the run's dev-chosen serving.json applied,
    reranking with the run's teacher (loaded on first use); student and teacher run under ``runtime`` (default the
    library's)."""
    cfg = cfg or SearchConfig()
    serving = read_serving(run)
    if serving is not None:
        cfg = serving.search_config(cfg)
    runtime = runtime or Runtime()
    pipe = SearchPipeline.from_run(run, student=student, config=cfg, name=name,
                                   reranker_loader=partial(teacher_reranker, runtime=runtime), runtime=runtime)
    if serving is not None:
        pipe.default_mode = serving.mode
    return pipe
