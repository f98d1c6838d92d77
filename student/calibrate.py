"""Student calibration: the bi-encoder's cosine(query, product) → P(Exact), P(Exact or Substitute), fitted on dev.

The raw score is what search ranks by: the inner product of the L2-normalised query and product
embeddings. :func:`fit_student_calibration` encodes the dev split's judged pairs with a loaded
student (the end of `distill train`); :func:`calibrate_student` does it for a saved student folder
and writes ``calibration.json`` beside it. The primitive lives in :mod:`reldistill.calibration`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reldistill.calibration import (Calibration, dev_identity, dev_matches, fit_calibration, load_calibration,
                                    save_calibration)
from reldistill.config import DataConfig
from reldistill.settings import Runtime

SCORE = "student cosine of the L2-normalised query and product embeddings (the dense index's inner product)"


def pair_cosines(model, queries: list[str], texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Cosine of each (query, text) pair: every distinct query and text encoded once."""
    from reldistill.student.encode import encode_documents, encode_queries

    uq, ut = list(dict.fromkeys(queries)), list(dict.fromkeys(texts))
    qv = encode_queries(model, uq, batch_size)
    dv = encode_documents(model, ut, batch_size)
    qi, ti = {q: i for i, q in enumerate(uq)}, {t: i for i, t in enumerate(ut)}
    return np.einsum("ij,ij->i", qv[[qi[q] for q in queries]].astype(np.float64),
                     dv[[ti[t] for t in texts]].astype(np.float64))


def fit_student_calibration(model, examples: pd.DataFrame, split: str = "dev", data_cfg: DataConfig | None = None,
                            batch_size: int = 64) -> Calibration:
    """Fit on the judged pairs of ``split`` in ``examples`` (query, text, query_id, esci_label, split)."""
    dev = examples[examples["split"] == split]
    scores = pair_cosines(model, dev["query"].astype(str).tolist(), dev["text"].astype(str).tolist(), batch_size)
    ident = dev_identity(data_cfg) if data_cfg is not None else {}
    return fit_calibration(scores, dev["esci_label"].astype(str).tolist(), dev["query_id"].astype(str).tolist(),
                           "identity", score=SCORE, split=split, **ident)


def calibrate_student(student_dir: str | Path, data_cfg: DataConfig, force: bool = False, *,
                      runtime: Runtime | None = None) -> tuple[Calibration, bool]:
    """Fit (or keep, when fitted on this very dev split and not ``force``) the calibration of a student folder
    (loaded on ``runtime``'s backend)."""
    from reldistill.data import carve_dev, load_esci
    from reldistill.student.encode import load_student

    have = load_calibration(student_dir)
    if have is not None and not force and dev_matches(have, data_cfg):
        return have, False
    data = load_esci(data_cfg)
    examples = data.examples.copy()
    examples["split"] = carve_dev(examples, data_cfg.dev_fraction, data_cfg.seed)
    cal = fit_student_calibration(load_student(str(student_dir), runtime=runtime), examples, "dev", data_cfg)
    save_calibration(student_dir, cal)
    return cal, True
