"""The one-query path: FAISS searches a single query on one OpenMP thread (per calling thread), batches on all."""

from __future__ import annotations

import threading

import numpy as np

from tests.retrieval_testkit import unit_vectors


def test_single_query_search_runs_on_one_thread_and_matches_the_batch():
    import faiss

    from reldistill.index import dense
    from reldistill.index.dense import DenseIndex

    x = unit_vectors(3000, 32, seed=1)
    ids = [f"p{i}" for i in range(len(x))]
    index = DenseIndex.build(x, ids)
    q = unit_vectors(40, 32, seed=2)
    batch_ids, batch_scores = index.search(q, 10)
    assert faiss.omp_get_max_threads() == dense.default_omp_threads()  # a batch uses every thread
    for i in range(len(q)):
        one_ids, one_scores = index.search(q[i], 10)
        assert faiss.omp_get_max_threads() == 1
        assert one_ids[0] == batch_ids[i]
        np.testing.assert_allclose(one_scores[0], batch_scores[i], atol=1e-5)
    seen = []
    t = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
    t.start()
    t.join()
    assert seen == [dense.default_omp_threads()]  # another thread (a concurrent request) keeps its own setting


def test_the_batch_thread_count_is_the_process_default_whoever_touches_faiss_first():
    """A served request leaves its thread at one OpenMP thread; if that thread is the first to use FAISS, batches
    must still get the process default, not that thread's 1."""
    import faiss

    from reldistill.index import dense

    dense.default_omp_threads.cache_clear()

    def first_use():
        faiss.omp_set_num_threads(1)
        dense.faiss_module()

    t = threading.Thread(target=first_use)
    t.start()
    t.join()
    seen = []
    probe = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
    probe.start()
    probe.join()
    assert dense.default_omp_threads.cache_info().currsize == 1  # read by the first use, on its thread
    assert [dense.default_omp_threads()] == seen
