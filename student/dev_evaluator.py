"""The student's dev evaluation as a sentence-transformers evaluator: the trainer calls it each epoch to keep the best
checkpoint (full-catalog nDCG@10 / Recall@100 from `reldistill.student.dev_eval`).

Its own module because its base class loads sentence-transformers (and transformers, datasets, peft with it): the
figures in `dev_eval` stay importable by index-time gates and search without that import.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sentence_transformers.sentence_transformer.evaluation import BaseEvaluator

from reldistill.student.dev_eval import METRICS, evaluate_student
from reldistill.student.encode import encode_documents


class DevRetrievalEvaluator(BaseEvaluator):
    """sentence-transformers evaluator: full-catalog nDCG@10 / Recall@100 on one split (primary: nDCG@10).

    Used by SentenceTransformerTrainer each epoch to keep the best checkpoint; every result is also
    kept in ``history`` (epoch, steps, metrics) for the manifest.
    """

    def __init__(self, examples: pd.DataFrame, products: pd.DataFrame, split: str = "dev", batch_size: int = 64):
        super().__init__()
        self.examples, self.products, self.split, self.batch_size = examples, products, split, batch_size
        self.name = split
        self.primary_metric = "ndcg@10"
        self.history: list[dict] = []
        self.best: tuple[float, int, np.ndarray] | None = None  # (nDCG@10, step, catalog vectors) of the best eval

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        docs = encode_documents(model, self.products["text"].astype(str).tolist(), self.batch_size)
        res = evaluate_student(model, self.examples, self.products, self.split, batch_size=self.batch_size, doc_embeddings=docs)
        self.history.append({"epoch": epoch, "steps": steps, **res})
        if self.best is None or res["ndcg@10"] > self.best[0]:
            self.best = (res["ndcg@10"], steps, docs)
        metrics = self.prefix_name_to_metrics({m: res[m] for m in METRICS}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics
