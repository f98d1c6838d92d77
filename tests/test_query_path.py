"""The one-query path: FAISS searches a single query on one OpenMP thread (per calling thread), batches on all."""

from __future__ import annotations

import threading

import numpy as np

from retrieval_testkit import unit_vectors


def test_single_query_search_runs_on_one_thread_and_matches_the_batch():
    import faiss

    from reldistill.retrieval import dense
    from reldistill.retrieval.dense import DenseIndex

    x = unit_vectors(3000, 32, seed=1)
    ids = [f"p{i}" for i in range(len(x))]
    index = DenseIndex.build(x, ids)
    q = unit_vectors(40, 32, seed=2)
    batch_ids, batch_scores = index.search(q, 10)
    assert faiss.omp_get_max_threads() == dense._omp_default[0]  # a batch uses every thread
    for i in range(len(q)):
        one_ids, one_scores = index.search(q[i], 10)
        assert faiss.omp_get_max_threads() == 1
        assert one_ids[0] == batch_ids[i]
        np.testing.assert_allclose(one_scores[0], batch_scores[i], atol=1e-5)
    seen = []
    t = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
    t.start()
    t.join()
    assert seen == [dense._omp_default[0]]  # another thread (a concurrent request) keeps its own setting
