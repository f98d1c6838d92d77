"""Teacher calibration: the teacher's probability sigmoid(logit) → P(Exact), P(Exact or Substitute), fitted on dev.

:func:`fit_teacher_calibration` fits from dev scores already in hand (the end of `teacher train`);
:func:`calibrate_teacher` scores the dev split's judged pairs with an existing artifact (a bundled
teacher, or one trained before calibration existed) and writes ``calibration.json`` beside it. The
primitive itself lives in :mod:`reldistill.calibration`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.calibration import Calibration, dev_identity, dev_matches, fit_calibration, load_calibration, save_calibration
from reldistill.config import DataConfig
from reldistill.settings import Runtime

log = logging.getLogger(__name__)

SCORE = "teacher probability sigmoid(logit) (RankedResult.score, /rerank relevance_score, teacher_score)"
Scorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def fit_teacher_calibration(dev: pd.DataFrame, probs: np.ndarray, data_cfg: DataConfig | None = None) -> Calibration:
    """Fit on dev pairs (``query_id``, ``esci_label``) and the teacher's probabilities of them."""
    ident = dev_identity(data_cfg) if data_cfg is not None else {}
    return fit_calibration(probs, dev["esci_label"].astype(str).tolist(), dev["query_id"].astype(str).tolist(),
                           "logit", score=SCORE, split="dev", **ident)


def dev_pairs(data_cfg: DataConfig, max_pairs: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The judged pairs of the dev split carved from train (as training carves it), whole queries, at most ``max_pairs``."""
    from reldistill.teacher.pairs import cap_by_query, split_pairs

    return cap_by_query(split_pairs(data_cfg)["dev"], max_pairs, seed).reset_index(drop=True)


def calibrate_teacher(teacher_dir: str | Path, data_cfg: DataConfig, scorer: Scorer | None = None,
                      dtype: str = "auto", batch_size: int | None = None, max_pairs: int | None = None,
                      force: bool = False, *, runtime: Runtime | None = None) -> tuple[Calibration, bool]:
    """Fit (or keep) the calibration of the teacher in ``teacher_dir`` on ``data_cfg``'s dev split.

    An existing calibration fitted on this very dev split (all its ``max_pairs``-capped pairs) is kept unless ``force``. ``scorer``
    (queries, texts) → probabilities defaults to loading the teacher. Returns (calibration, fitted now).
    """
    from reldistill.teacher.artifact import open_artifact

    open_artifact(teacher_dir)
    have = load_calibration(teacher_dir)
    dev = dev_pairs(data_cfg, max_pairs)
    # kept only when fitted on these very pairs: training fits on the dev queries it ranks (multi-judged ones);
    # offered the whole dev split, each target is fitted on all of it or on the ranked queries (fit_calibration chooses)
    if have is not None and not force and dev_matches(have, data_cfg) and have.dev.get("pairs") == len(dev):
        return have, False
    if scorer is None:
        from reldistill.teacher.teacher import Teacher

        teacher = Teacher.load(teacher_dir, dtype=dtype, runtime=runtime)
        scorer = lambda q, t: teacher.score_pairs(q, t, batch_size=batch_size, progress=True)  # noqa: E731
    probs = np.asarray(scorer(dev["query"].astype(str).tolist(), dev["text"].astype(str).tolist()), dtype=np.float64)
    cal = fit_teacher_calibration(dev, probs, data_cfg)
    save_calibration(teacher_dir, cal)
    log.info("teacher calibration on %d dev pairs: %s", len(dev), {t: c.method for t, c in cal.targets.items()})
    return cal, True
