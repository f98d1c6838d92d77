"""Teacher labelling of mined candidates: a thin, resumable wrapper over the teacher's ``score_file``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reldistill.artifacts import MANIFEST, data_fingerprint, file_fingerprint, write_manifest
from reldistill.config import DataConfig
from reldistill.errors import UserError
from reldistill.recipe.teacher import ScoreConfig
from reldistill.settings import Runtime
from reldistill.teacher.int8 import int8_mode, read_verdict
from reldistill.teacher.score import score_file

from .scores import read_table


def label_candidates(candidates_path: str | Path, teacher_dir: str | Path, out_path: str | Path,
                     data_cfg: DataConfig | None = None, score: ScoreConfig | None = None, *,
                     runtime: Runtime | None = None) -> Path:
    """Score every candidate pair with the teacher → ``out_path`` (candidates + teacher_score, teacher_logit),
    then the scores manifest (kind "scores", with the teacher's int8 verdict) beside it, last.

    Resumable: the teacher's ``score_file`` skips shards it already finished. The human columns
    (esci_label, soft_label, source, split) of the candidates are carried through. ``score``: the
    recipe's ``score:`` section (batch size, dtype, shard size); ``runtime``: the teacher's int8, prefix-KV and memo
    settings.
    """
    cands = read_table(candidates_path, "candidates file")
    for col in ("query", "product_id"):
        if col not in cands.columns:
            raise UserError(f"candidates file {candidates_path} has no column {col!r} — rerun `reldistill distill mine`.")
    if cands.empty:
        raise UserError(f"candidates file {candidates_path} has no rows — rerun `reldistill distill mine` with a larger depth.")
    score = score or ScoreConfig()
    (Path(out_path).parent / MANIFEST).unlink(missing_ok=True)  # a stale manifest never vouches for new scores
    out = Path(score_file(teacher_dir, candidates_path, out_path, data_cfg=data_cfg, batch_size=score.batch_size,
                          dtype=score.dtype, shard_size=score.shard_size, runtime=runtime))
    queries = pd.read_parquet(out, columns=["query"])["query"]
    int8 = read_verdict(Path(teacher_dir), runtime) if int8_mode(runtime) == "auto" else None  # measured when the teacher loaded
    write_manifest(out.parent, "scores", scores=out.name, pairs=len(queries), queries=int(queries.nunique()),
                   teacher=str(Path(teacher_dir).resolve()), teacher_manifest=file_fingerprint(Path(teacher_dir) / MANIFEST),
                   candidates=str(Path(candidates_path).resolve()), candidates_sha256=file_fingerprint(candidates_path),
                   data={"path": data_cfg.path, "fingerprint": data_fingerprint(data_cfg.path)} if data_cfg else None,
                   score={"batch_size": score.batch_size, "dtype": score.dtype, "shard_size": score.shard_size},
                   teacher_int8=int8)
    return out

