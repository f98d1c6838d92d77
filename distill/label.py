"""Teacher labelling of mined candidates: a thin, resumable wrapper over the teacher's ``score_file``."""

from __future__ import annotations

from pathlib import Path

from reldistill.config import DataConfig
from reldistill.errors import UserError
from reldistill.recipe.teacher import ScoreConfig

from .scores import read_table


def label_candidates(candidates_path: str | Path, teacher_dir: str | Path, out_path: str | Path,
                     data_cfg: DataConfig | None = None, score: ScoreConfig | None = None) -> Path:
    """Score every candidate pair with the teacher → ``out_path`` (candidates + teacher_score, teacher_logit).

    Resumable: the teacher's ``score_file`` skips shards it already finished. The human columns
    (esci_label, soft_label, source, split) of the candidates are carried through. ``score``: the
    recipe's ``score:`` section (batch size, dtype, shard size).
    """
    from reldistill.teacher.score import score_file

    cands = read_table(candidates_path, "candidates file")
    for col in ("query", "product_id"):
        if col not in cands.columns:
            raise UserError(f"candidates file {candidates_path} has no column {col!r} — rerun `reldistill distill mine`.")
    if cands.empty:
        raise UserError(f"candidates file {candidates_path} has no rows — rerun `reldistill distill mine` with a larger depth.")
    score = score or ScoreConfig()
    out = score_file(teacher_dir, candidates_path, out_path, data_cfg=data_cfg, batch_size=score.batch_size,
                     dtype=score.dtype, shard_size=score.shard_size)
    return Path(out)

