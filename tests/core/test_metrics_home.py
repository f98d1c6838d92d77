"""One metrics home (reldistill.metrics): teacher dev eval, student dev eval and `reldistill eval` give the same
nDCG on the same run; the student's full-catalog search (FAISS flat, no queries × catalog matrix) is exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reldistill.labels import DEFAULT_GAINS
from tests.conftest import TEST_RUNTIME


def test_exact_top_k_equals_the_full_matrix_top_k_on_random_data():
    from reldistill.distill.mine import dense_top
    from reldistill.index.dense import exact_top_k

    rng = np.random.default_rng(7)
    docs = rng.normal(size=(3000, 24)).astype(np.float32)
    queries = rng.normal(size=(37, 24)).astype(np.float32)
    scores, rows = exact_top_k(queries, docs, 50)
    full = queries @ docs.T
    want = np.argsort(-full, axis=1, kind="stable")[:, :50]
    assert np.array_equal(rows, want)
    assert np.allclose(scores, np.take_along_axis(full, want, axis=1), atol=1e-4)
    assert dense_top(queries, docs, 50) == want.tolist()
    assert exact_top_k(queries, docs[:10], 50)[1].shape == (37, 10)  # k above the catalog size: the whole catalog


@pytest.mark.slow
def test_teacher_student_and_eval_ndcg_agree_on_one_run(esci_dir, tmp_path):
    """A small catalog searched to its full depth, so every judged product is in the run (the teacher's
    per-query nDCG ranks exactly the run's candidates; ranx ranks the run against the qrels)."""
    from reldistill.config import DataConfig
    from reldistill.data import load_esci
    from reldistill.student.dev_eval import catalog_search, evaluate_student, split_qrels
    from reldistill.eval.metrics import evaluate, metric_specs, to_qrels, to_run
    from reldistill.student import load_student
    from reldistill.teacher.metrics import mean_ndcg
    from tests.builders.tiny_student import build_tiny_student

    data = load_esci(DataConfig(path=str(esci_dir)))
    ex = data.examples
    counts = ex.groupby("query_id").size()
    qids = [q for q in dict.fromkeys(ex.loc[ex["query_id"].isin(counts[counts >= 8].index), "query_id"])][:6]
    examples = ex[ex["query_id"].isin(qids)].assign(split="dev")
    products = data.products[data.products["product_id"].isin(examples["product_id"])].reset_index(drop=True)
    products = pd.concat([products, data.products[~data.products["product_id"].isin(products["product_id"])].head(40)],
                         ignore_index=True)
    # seeded: an unseeded tiny student ties two products now and then (torch seeds each process afresh)
    model = load_student(str(build_tiny_student(tmp_path / "tiny", max_seq_length=64, seed=0)), runtime=TEST_RUNTIME)

    student = evaluate_student(model, examples, products, "dev", k=len(products))["ndcg@10"]

    queries, qrels = split_qrels(examples, "dev")
    order = list(queries)
    scores, rows = catalog_search(model, [queries[q] for q in order], products, k=len(products))
    pids = products["product_id"].astype(str).to_numpy()
    run = {q: {pids[j]: float(s) for j, s in zip(rows[i], scores[i])} for i, q in enumerate(order)}
    assert all(len(set(r.values())) == len(r) for r in run.values())  # no ties: every caller ranks alike
    specs = metric_specs(DEFAULT_GAINS, ["E"], ndcg_k=10, depth=len(products))
    means, _ = evaluate(to_qrels(qrels), to_run(run, "student", order), specs)

    teacher_rows = [(q, p, s, qrels[q].get(p, 0.0)) for q in order for p, s in run[q].items()]
    teacher, n = mean_ndcg(pd.DataFrame(teacher_rows, columns=["query_id", "product_id", "teacher_score", "gain"]), k=10)

    assert n == len(order) and 0.0 < student < 1.0
    assert means["nDCG@10"] == pytest.approx(student, abs=1e-9)
    assert teacher == pytest.approx(student, abs=1e-9)
