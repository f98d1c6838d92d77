"""Dense (FAISS) and BM25 indexes: round trip, manifest checks, corruption, add/update/delete without rebuild."""

import dataclasses
import json

import numpy as np
import pytest

from reldistill.errors import UserError
from reldistill.recipe.retrieval import IndexConfig
from reldistill.index.dense import DENSE_MANIFEST, FAISS_FILE, IDS_FILE, DenseIndex
from reldistill.index.lexical import BM25Index
from tests.retrieval_testkit import unit_vectors

IDS = [f"P{i:04d}" for i in range(600)]
IVFPQ = IndexConfig(kind="ivfpq", ivf_nlist=8, ivf_nprobe=8, pq_m=8, pq_bits=4)
CFGS = {"flat": IndexConfig(), "hnsw": IndexConfig(kind="hnsw", hnsw_m=8, hnsw_ef_construction=40), "ivfpq": IVFPQ,
        "ivfpq-sq8": dataclasses.replace(IVFPQ, ivf_refine="sq8"), "ivfpq-flat": dataclasses.replace(IVFPQ, ivf_refine="flat")}


@pytest.fixture(scope="module")
def vecs():
    return unit_vectors(len(IDS), 32)


@pytest.mark.parametrize("kind", list(CFGS))
def test_round_trip_same_results(tmp_path, vecs, kind):
    cfg = CFGS[kind]
    kind = cfg.kind
    idx = DenseIndex.build(vecs, IDS, kind=kind, model="student-a", config=cfg)
    ids, scores = idx.search(vecs[:5], 10)
    if kind != "ivfpq":  # exact/graph search finds each vector itself first
        assert [row[0] for row in ids] == IDS[:5]
    idx.save(tmp_path)
    back = DenseIndex.load(tmp_path, expect_model="student-a", expect_dim=32)
    ids2, scores2 = back.search(vecs[:5], 10)
    assert ids2 == ids
    np.testing.assert_allclose(scores2, scores, rtol=1e-5)
    assert len(back) == len(IDS) and back.kind == kind and back.config == cfg


@pytest.mark.parametrize("kind", list(CFGS))
def test_add_update_delete_without_rebuild(tmp_path, vecs, kind):
    idx = DenseIndex.build(vecs, IDS, kind=CFGS[kind].kind, model="m", config=CFGS[kind])
    new = unit_vectors(1, 32, seed=99)
    idx.add(["NEW"], new)
    assert idx.search(new, 1)[0][0] == ["NEW"]  # searchable at once
    idx.add(["NEW"], vecs[7:8])  # update: the old vector is gone
    assert idx.search(new, 3)[0][0][0] != "NEW"
    assert len(idx) == len(IDS) + 1
    assert idx.remove(["P0003", "nope"]) == 1
    assert "P0003" not in idx.search(vecs[3:4], 20)[0][0]
    idx.save(tmp_path)
    back = DenseIndex.load(tmp_path)
    assert "P0003" not in back.search(vecs[3:4], 20)[0][0]
    assert len(back) == len(IDS)
    back.add(["NEXT"], new)  # keys keep growing after a reload: no collision with old keys
    assert back.search(new, 1)[0][0] == ["NEXT"]


def test_ivfpq_refine_rescores_the_pq_shortlist(tmp_path, vecs):
    """A refine step (index.ivf_refine) finds more of the exact top 10 than PQ codes alone; nprobe still tunes it."""
    queries = unit_vectors(200, 32, seed=5)
    truth = DenseIndex.build(vecs, IDS).search(queries, 10)[0]

    def recall(idx):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx.search(queries, 10)[0], truth)])

    plain = recall(DenseIndex.build(vecs, IDS, "ivfpq", config=IVFPQ))
    sq8 = DenseIndex.build(vecs, IDS, "ivfpq", config=CFGS["ivfpq-sq8"])
    flat = DenseIndex.build(vecs, IDS, "ivfpq", config=CFGS["ivfpq-flat"])
    assert recall(sq8) > plain + 0.2 and recall(flat) > plain + 0.2, (plain, recall(sq8), recall(flat))
    before = recall(sq8)
    sq8.tune(nprobe=1)  # one list of eight probed: a shorter shortlist
    assert recall(sq8) < before - 0.2
    sq8.save(tmp_path)
    assert DenseIndex.load(tmp_path).config.ivf_nprobe == 1
    with pytest.raises(UserError, match="ivf_refine"):
        IndexConfig(kind="ivfpq", ivf_refine="pq")


def test_ids_not_positions(vecs):
    """Every vector carries its product id: shuffling the input does not change who is found."""
    perm = np.random.default_rng(1).permutation(len(IDS))
    idx = DenseIndex.build(vecs[perm], [IDS[i] for i in perm])
    assert idx.search(vecs[42:43], 1)[0][0] == [IDS[42]]
    np.testing.assert_allclose(idx.vector(IDS[42]), vecs[42], rtol=1e-6)


def test_manifest_mismatch_refused(tmp_path, vecs):
    DenseIndex.build(vecs, IDS, model="student-a").save(tmp_path)
    with pytest.raises(UserError, match="384 dimensions"):
        DenseIndex.load(tmp_path, expect_dim=384)
    with pytest.raises(UserError, match="built with student 'student-a'"):
        DenseIndex.load(tmp_path, expect_model="student-b")
    m = json.loads((tmp_path / DENSE_MANIFEST).read_text())
    m["count"] = 5
    (tmp_path / DENSE_MANIFEST).write_text(json.dumps(m))
    with pytest.raises(UserError, match="disagree"):
        DenseIndex.load(tmp_path)


def test_corrupted_and_missing_files_refused(tmp_path, vecs):
    DenseIndex.build(vecs, IDS).save(tmp_path)
    raw = (tmp_path / FAISS_FILE).read_bytes()
    (tmp_path / FAISS_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="corrupted"):
        DenseIndex.load(tmp_path)
    (tmp_path / IDS_FILE).unlink()
    with pytest.raises(UserError, match="missing"):
        DenseIndex.load(tmp_path)
    (tmp_path / DENSE_MANIFEST).unlink()
    with pytest.raises(UserError, match="not a finished dense index"):
        DenseIndex.load(tmp_path)


def test_bad_build_inputs(vecs):
    with pytest.raises(UserError, match="more than once"):
        DenseIndex.build(vecs[:3], ["a", "b", "a"])
    with pytest.raises(UserError, match="match one to one"):
        DenseIndex.build(vecs[:3], ["a", "b"])
    with pytest.raises(UserError, match="NaN"):
        DenseIndex.build(np.full((2, 4), np.nan, np.float32), ["a", "b"])
    with pytest.raises(UserError, match="kind"):
        DenseIndex.build(vecs[:3], ["a", "b", "c"], kind="lsh")
    idx = DenseIndex.build(vecs[:3], ["a", "b", "c"])
    with pytest.raises(UserError, match="dimension 16 but the index holds dimension 32"):
        idx.add(["d"], unit_vectors(1, 16))
    with pytest.raises(UserError, match="dimension"):
        idx.search(unit_vectors(1, 16), 3)
    with pytest.raises(UserError, match="k must be"):
        idx.search(vecs[:1], 0)
    assert idx.search(vecs[:1], 50)[0][0][0] == "a"  # k above the count returns what exists


def test_bm25_round_trip_add_remove(tmp_path):
    texts = ["red running shoes for men", "blue running shoes", "kitchen knife set", "usb c cable 6 ft"]
    bm = BM25Index.build(["a", "b", "c", "d"], texts)
    ids, scores = bm.search(["running shoes", "knife", "zzz"], 10)
    assert set(ids[0]) == {"a", "b"} and ids[1] == ["c"] and ids[2] == []
    assert all(s > 0 for s in scores[0])
    bm.save(tmp_path)
    back = BM25Index.load(tmp_path)
    assert back.search(["running shoes"], 10) == bm.search(["running shoes"], 10)
    back.remove(["a"])
    assert back.search(["running shoes"], 10)[0] == [["b"]]
    back.add(["e"], ["green trail running shoes"])
    assert back.search(["trail"], 10)[0] == [["e"]]
    with pytest.raises(UserError, match="more than once"):
        BM25Index.build(["a", "a"], ["x", "y"])


def test_bm25_corrupted_refused(tmp_path):
    BM25Index.build(["a", "b"], ["red shoes", "blue shoes"]).save(tmp_path)
    for f in (tmp_path / "bm25").iterdir():
        if f.suffix == ".npy":
            f.write_bytes(b"garbage")
    with pytest.raises(UserError, match="BM25"):
        BM25Index.load(tmp_path)


def _bm25s_top(bm: BM25Index, queries: list[str], k: int) -> tuple[list[list[str]], list[list[float]]]:
    """What search returned before batching: bm25s's own retrieve, one query at a time (zero scores dropped)."""
    from reldistill.index.lexical import tokenize

    docs, scores = bm.retriever.retrieve(tokenize(queries), k=min(k, len(bm.ids)), show_progress=False, n_threads=0)
    return ([[bm.ids[int(d)] for d, s in zip(dr, sr) if s > 0] for dr, sr in zip(docs, scores)],
            [[float(s) for s in sr if s > 0] for sr in scores])


def _assert_same_top_k(bm: BM25Index, new, old) -> int:
    """Same scores rank by rank, and the same products at each score above the k-th (bm25s orders equal
    scores arbitrarily, so at the k-th score only the count can match); equal scores in catalog order.
    Returns how many results were compared by product."""
    compared = 0
    for ids, sc, oids, osc in zip(*new, *old):
        assert np.allclose(sc, osc, rtol=1e-6, atol=0), (sc, osc)
        sc, osc = np.array(sc), np.array(osc)
        for v in np.unique(sc):
            group = [p for p, s in zip(ids, sc) if np.isclose(s, v, rtol=1e-6)]
            assert [bm._pos[p] for p in group] == sorted(bm._pos[p] for p in group)
            if not np.isclose(v, sc[-1], rtol=1e-6):
                assert set(group) == {p for p, s in zip(oids, osc) if np.isclose(s, v, rtol=1e-6)}
                compared += len(group)
    return compared


@pytest.mark.slow
def test_bm25_batched_search_gives_bm25s_top_k_on_the_esci_sample(esci_dir, monkeypatch):
    import reldistill.index.lexical as lexical
    from reldistill.config import DataConfig
    from reldistill.data import load_esci

    data = load_esci(DataConfig(path=str(esci_dir)))
    bm = BM25Index.build(data.products["product_id"].astype(str), data.products["text"].astype(str))
    queries = data.examples["query"].astype(str).drop_duplicates().tolist()[:400] + ["zzzqqq", "the of and", "red red red shoes"]
    new = bm.search(queries, 10)
    assert _assert_same_top_k(bm, new, _bm25s_top(bm, queries, 10)) > 2000
    assert new[0][-3] == [] and new[0][-2] == [] and len(new[0][-1]) == 10  # unknown / stop-word-only queries: nothing
    for sc in new[1]:
        assert sc == sorted(sc, reverse=True)
    # batches cut anywhere (here: one query each) give the same lists
    monkeypatch.setattr(lexical, "BATCH_POSTINGS", 1)
    assert bm.search(queries, 10) == new
    # memory is bounded by the postings a batch reads, not by the number of queries
    monkeypatch.setattr(lexical, "BATCH_POSTINGS", 20_000)
    batches = list(bm._batches(queries))
    assert len(batches) > 5 and sum(b.shape[0] for b in batches) == len(queries)
    assert all(b.nnz <= 20_000 or b.shape[0] == 1 for b in batches)
    # pairs: bm25s's own per-query scores
    pids = data.products["product_id"].astype(str).sample(len(queries), random_state=0, replace=True).tolist()
    want = [float(bm.retriever.get_scores(t)[bm._pos[p]]) if t else 0.0 for t, p in zip(lexical.tokenize(queries), pids)]
    assert np.allclose(bm.score_pairs(queries, pids), want, rtol=1e-6)
