"""The rerank endpoint as search engines call it: their exact request bodies replayed against a live
`reldistill serve` process on loopback (tiny real teacher), answers parsed by the engines' own rules.

Contracts replayed (read from the engines' sources):
- OpenSearch ML Commons, Cohere rerank connector (``connector.pre_process.cohere.rerank`` /
  ``connector.post_process.cohere.rerank``): ``CohereRerankPreProcessFunction`` sends
  ``{"query": <query text>, "documents": [<str>...], "top_n": len(documents)}`` into the blueprint's
  request body ``{"documents": ${parameters.documents}, "query": "${parameters.query}", "top_n": ${parameters.top_n}}``;
  ``CohereRerankPostProcessFunction`` reads ``$.results``, requires ``index`` and ``relevance_score`` in
  each item, casts them to Integer / Double, and writes ``scores[index]`` into an array as long as the
  result list — so every document must come back, with a float score.
  (opensearch-project/ml-commons, common/src/main/java/org/opensearch/ml/common/connector/functions/
  {preprocess/CohereRerankPreProcessFunction.java, postprocess/CohereRerankPostProcessFunction.java})
- Elasticsearch ``custom`` inference service, task ``rerank``: ``RerankParameters`` fills ``${input}``
  (the documents as a JSON array) and ``${query}`` in the request template
  ``{"documents": ${input}, "query": ${query}, "model": ...}``; ``RerankResponseParser`` reads
  ``json_parser.reranked_index`` = ``$.results[*].index`` and ``json_parser.relevance_score`` =
  ``$.results[*].relevance_score``.
  (elastic/elasticsearch, x-pack/plugin/inference/.../services/custom/request/RerankParameters.java,
  .../custom/response/RerankResponseParser.java)
- Cohere rerank v1/v2 (docs.cohere.com reference "rerank"): ``POST /v1/rerank`` and ``/v2/rerank``,
  documents as strings or ``{"text": ...}``, optional ``top_n``, ``return_documents``,
  ``max_tokens_per_doc``; answer ``{"id", "results": [{"index", "relevance_score", "document"?}], "meta"}``.
"""

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.retrieval_testkit import small_run
from tests.conftest import TEST_RUNTIME

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from serve_util import serve  # noqa: E402

pytestmark = pytest.mark.slow  # every test talks to a live `reldistill serve` process

DOCS = ["red running shoes for men", "stainless steel water bottle 32 oz", "kids toys for 3 year old girls",
        "wireless bluetooth headphones noise cancelling", "running shoes women size 8", "coffee maker with grinder"]
QUERY = "running shoes"


@pytest.fixture(scope="module")
def served(tmp_path_factory, esci_dir):
    """`reldistill serve` on a run = the small real index + a tiny random teacher; yields (url, teacher dir)."""
    from tests.builders.tiny_teacher import build_tiny_teacher

    base = small_run(tmp_path_factory, esci_dir)[0]
    run = tmp_path_factory.mktemp("engines-run")
    (run / "index").symlink_to(base / "index", target_is_directory=True)
    build_tiny_teacher(run / "teacher")
    with serve(str(run), ["--threads", "1"]) as (url, _pid):
        yield url, run / "teacher"


@pytest.fixture(scope="module")
def expected(served):
    """The teacher's own probabilities for (QUERY, DOCS), in input order."""
    from reldistill.teacher.teacher import Teacher

    return Teacher.load(served[1], runtime=TEST_RUNTIME).score_pairs([QUERY] * len(DOCS), DOCS)


def _post(url: str, path: str, body: dict) -> tuple[dict, str]:
    r = httpx.post(url + path, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json(), r.text


def test_opensearch_cohere_connector_round_trip(served, expected):
    url, _ = served
    # CohereRerankPreProcessFunction's parameters, substituted into the blueprint's request_body
    params = {"query": QUERY, "documents": DOCS, "top_n": len(DOCS)}
    body = json.loads('{"documents": %s, "query": %s, "top_n": %d}'
                      % (json.dumps(params["documents"]), json.dumps(params["query"]), params["top_n"]))
    out, _ = _post(url, "/v1/rerank", body)
    results = out["results"]  # the connector's response path: $.results
    assert results and all("index" in r and "relevance_score" in r for r in results)
    scores = [None] * len(results)  # CohereRerankPostProcessFunction: Double[results.size()], scores[index] = score
    for r in results:
        assert isinstance(r["index"], int) and isinstance(r["relevance_score"], float)
        scores[r["index"]] = r["relevance_score"]
    assert None not in scores and len(scores) == len(DOCS)  # every document came back, each index once
    np.testing.assert_allclose(scores, expected, atol=1e-5)  # input order recovered
    assert [r["relevance_score"] for r in results] == sorted(scores, reverse=True)


def test_elasticsearch_custom_rerank_round_trip(served, expected):
    url, _ = served
    template = '{"documents": ${input}, "query": ${query}, "model": "reldistill-teacher"}'
    body = json.loads(template.replace("${input}", json.dumps(DOCS)).replace("${query}", json.dumps(QUERY)))
    out, _ = _post(url, "/rerank", body)
    idx = [r["index"] for r in out["results"]]  # json_parser.reranked_index: $.results[*].index
    rel = [r["relevance_score"] for r in out["results"]]  # json_parser.relevance_score: $.results[*].relevance_score
    assert sorted(idx) == list(range(len(DOCS))) and all(isinstance(s, float) for s in rel)
    by_input = np.empty(len(DOCS))
    by_input[idx] = rel
    np.testing.assert_allclose(by_input, expected, atol=1e-5)


def test_cohere_v1_v2_paths_answer_the_same(served, expected):
    url, _ = served
    plain = {"query": QUERY, "documents": DOCS, "top_n": 3, "model": "rerank-v3.5", "return_documents": True}
    as_objects = {**plain, "documents": [{"text": d} for d in DOCS]}
    answers = [_post(url, path, b)[0] for path in ("/rerank", "/v1/rerank", "/v2/rerank") for b in (plain, as_objects)]
    first = [(r["index"], r["relevance_score"], r["document"]) for r in answers[0]["results"]]
    assert len(first) == 3 and [i for i, _, _ in first] == list(np.argsort(-expected, kind="stable")[:3])
    assert all(doc == {"text": DOCS[i]} for i, _, doc in first)
    for a in answers:
        assert [(r["index"], r["relevance_score"], r["document"]) for r in a["results"]] == first
        assert a["id"] and a["meta"]["billed_units"]["search_units"] == 1
    assert {a["meta"]["api_version"]["version"] for a in answers[4:]} == {"2"}
    assert len({a["id"] for a in answers}) == len(answers)  # a fresh id per answer, as Cohere's


def test_max_tokens_per_doc_cuts_documents(served):
    """``max_tokens_per_doc`` scores the first N tokens only: a long tail past N cannot change the score."""
    from reldistill.teacher.teacher import Teacher

    url, tdir = served
    long_doc = "red running shoes " + "kitchen knife " * 20
    out, _ = _post(url, "/v2/rerank", {"query": QUERY, "documents": [long_doc, DOCS[1]], "max_tokens_per_doc": 3})
    teacher = Teacher.load(tdir, runtime=TEST_RUNTIME)
    ids = teacher.tokenizer(long_doc, add_special_tokens=False, return_offsets_mapping=True)
    cut = long_doc[: ids["offset_mapping"][2][1]]
    want = teacher.score_pairs([QUERY, QUERY], [cut, long_doc])
    got = {r["index"]: r["relevance_score"] for r in out["results"]}
    assert got[0] == pytest.approx(float(want[0]), abs=1e-5)
    assert abs(want[0] - want[1]) > 1e-4  # the cut mattered
