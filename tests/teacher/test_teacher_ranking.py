"""The ranking teacher on a tiny random Llama: LM yes/no head, query-group batches and losses, cached prefix, whole-query dev."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import assert_user_error  # noqa: F401 - shared fixtures
from reldistill.errors import UserError
from tests.teacher_testkit import one_thread, write_pairs_table, write_recipe
from tests.conftest import TEST_RUNTIME


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.builders.tiny_teacher import build_tiny_base

    root = tmp_path_factory.mktemp("tiny-rank")
    base = build_tiny_base(root / "base", seed=0, layers=4)
    data = write_pairs_table(root / "pairs.csv", queries=20, per_query=6)
    return {"root": root, "base": base, "data": data}


def _lm_recipe(tiny, path, teacher=None, **train):
    import yaml

    p = write_recipe(path, tiny["base"], tiny["data"], **train)
    r = yaml.safe_load(p.read_text())
    r["teacher"].update({"head": "lm", "answer_tokens": ["Y", "N"], **(teacher or {})})
    p.write_text(yaml.safe_dump(r))
    return p


def test_lm_head_score_is_the_lm_heads_yes_minus_no_logit(tiny):
    from transformers import AutoModelForCausalLM

    from reldistill.teacher.inputs import PairEncoder
    from reldistill.teacher.teacher import build_cross_encoder
    from tests.builders.tiny_teacher import tiny_teacher_config

    cfg = tiny_teacher_config(head="lm", answer_tokens=["Y", "N"])
    model, tok, _ = build_cross_encoder(cfg, base=str(tiny["base"]))
    enc = PairEncoder(tok, cfg.template, cfg.max_length, "left")
    b = enc.collate(enc.encode(["shoes red", "tea"], ["red shoes item 1", "green tea bags 100 count, a longer text"]))
    lm = AutoModelForCausalLM.from_pretrained(str(tiny["base"])).eval()
    yes, no = (tok(t, add_special_tokens=False)["input_ids"][0] for t in ("Y", "N"))
    with torch.no_grad():
        got = model.eval()(b["input_ids"], b["attention_mask"])
        pos = (b["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits = lm(input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=pos).logits[:, -1]
        # by hand: the LM head's two rows applied to the final-normed last hidden state
        w = lm.lm_head.weight
        h = lm.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=pos).last_hidden_state[:, -1]
    torch.testing.assert_close(got, logits[:, yes] - logits[:, no], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, h @ (w[yes] - w[no]), rtol=1e-5, atol=1e-5)
    assert got[0] != got[1]
    assert not model.head.net[0].weight.requires_grad and model.head.net[0].bias.requires_grad


def test_lm_head_answer_token_must_be_one_token(tiny):
    from reldistill.errors import UserError
    from reldistill.teacher.teacher import build_cross_encoder
    from tests.builders.tiny_teacher import tiny_teacher_config

    with pytest.raises(UserError, match="not one"):
        build_cross_encoder(tiny_teacher_config(head="lm", answer_tokens=[" yes", "N"]), base=str(tiny["base"]))


def test_lm_teacher_trains_saves_loads_and_scores_through_every_path(tiny, tmp_path):
    from reldistill.recipe import load_recipe
    from reldistill.teacher import Teacher
    from reldistill.teacher.rerank import TeacherReranker
    from reldistill.teacher.train import train_teacher

    with one_thread():
        out = train_teacher(load_recipe(_lm_recipe(tiny, tmp_path / "r.yaml", epochs=1)), tmp_path / "t", progress=False, runtime=TEST_RUNTIME)
    m = json.loads((out / "manifest.json").read_text())
    assert m["score_head"]["kind"] == "lm" and m["score_head"]["answer_tokens"] == ["Y", "N"]
    assert len(m["score_head"]["answer_token_ids"]) == 2 and m["score_head"]["row"] == "net.0.weight"
    t = Teacher.load(out, dtype="float32", runtime=TEST_RUNTIME)
    s = t.score_pairs(["shoes red", "tea blue"], ["shoes mug item 1", "lamp pen item 2"])
    assert s.shape == (2,) and np.all((0 <= s) & (s <= 1)) and s[0] != s[1]
    ranked = TeacherReranker(t).rerank("shoes red", [("a", "shoes mug item 1"), ("b", "lamp pen item 2")])
    assert {r.id for r in ranked} == {"a", "b"}


def test_query_groups_keep_each_querys_candidates_together():
    from reldistill.teacher.pairs import add_random_negatives, query_groups

    rows = [dict(query_id=f"q{q}", query=f"query {q}", product_id=f"p{q}_{i}", text=f"t{q} {i}", esci_label="E",
                 soft_label=1.0, gain=1.0) for q in range(5) for i in range(q + 1)]
    df = add_random_negatives(pd.DataFrame(rows), 2, seed=0)
    assert len(df) == 15 + 10
    neg = df.iloc[15:]
    assert (neg["soft_label"] == 0).all() and (neg["esci_label"] == "I").all()
    assert all(not p.startswith(q.replace("q", "p") + "_") for q, p in zip(neg["query_id"], neg["product_id"]))
    groups = query_groups(df, 3, seed=0)
    seen = np.concatenate(groups)
    assert sorted(seen.tolist()) == list(range(len(df)))  # every row once
    for g in groups:
        assert 1 <= len(g) <= 3 and df["query_id"].iloc[g].nunique() == 1  # never mixes queries
    for q, n in df.groupby("query_id").size().items():  # a query fills ceil(n / 3) groups
        assert sum(df["query_id"].iloc[g].iloc[0] == q for g in groups) == -(-n // 3)


def test_listwise_and_ranknet_losses_by_hand():
    from reldistill.teacher.losses import listwise_loss, ranknet_loss, teacher_loss

    s = torch.tensor([2.0, 0.0, 1.0, 0.5, -1.0])
    y = torch.tensor([1.0, 0.0, 0.5, 0.0, 0.0])
    g = torch.tensor([0, 0, 0, 1, 1])  # group 1 has no positive label: no listwise target
    p = torch.softmax(s[:3], 0)
    t = y[:3] / y[:3].sum()
    torch.testing.assert_close(listwise_loss(s, y, g), -(t * p.log()).sum())
    pairs = [(0, 1), (0, 2), (2, 1)]  # label_i > label_j inside group 0 only
    want = torch.stack([torch.nn.functional.softplus(-(s[i] - s[j])) for i, j in pairs]).mean()
    torch.testing.assert_close(ranknet_loss(s, y, g), want)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(s, y)
    torch.testing.assert_close(teacher_loss("listwise", s, y, g, 0.5), listwise_loss(s, y, g) + 0.5 * bce)


@pytest.mark.slow
def test_cached_prefix_training_matches_uncached(tiny, tmp_path):
    from reldistill.recipe import load_recipe
    from reldistill.teacher.train import train_teacher

    kw = dict(epochs=2, train_layers=2, loss="listwise", bce_weight=0.5, group_size=4, batch_size=2, grad_accum=1,
              group_negatives=1, lr=5e-3, head_lr=5e-3, checkpoint_fraction=0.5, cache_dir=str(tmp_path / "cache"))
    with one_thread():
        a = train_teacher(load_recipe(_lm_recipe(tiny, tmp_path / "a.yaml", cache_prefix=True, **kw)), tmp_path / "a", progress=False, runtime=TEST_RUNTIME)
        b = train_teacher(load_recipe(_lm_recipe(tiny, tmp_path / "b.yaml", cache_prefix=False, **kw)), tmp_path / "b", progress=False, runtime=TEST_RUNTIME)
    assert list((tmp_path / "cache").glob("*.safetensors")), "the prefix states were cached"
    la = [json.loads(x) for x in (a / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (b / "train_log.jsonl").read_text().splitlines()]
    loss_a = [r["loss"] for r in la if r["event"] == "train"]
    loss_b = [r["loss"] for r in lb if r["event"] == "train"]
    assert len(loss_a) == len(loss_b) >= 4 and len(set(np.round(loss_a, 4))) > 1
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-4, atol=1e-5)
    dev_a = [r["dev_ndcg@10"] for r in la if r["event"] == "eval"]
    dev_b = [r["dev_ndcg@10"] for r in lb if r["event"] == "eval"]
    np.testing.assert_allclose(dev_a, dev_b, rtol=1e-5)
    ma = json.loads((a / "manifest.json").read_text())
    names = [k for k in __import__("safetensors.torch").torch.load_file(str(a / "adapter" / "adapter_model.safetensors"))]
    assert names and all(".layers.2." in k or ".layers.3." in k for k in names), "LoRA only on the top 2 of 4 layers"
    assert ma["train_pairs"] > ma["train_units"]  # units are query groups


@pytest.mark.slow
def test_dev_eval_covers_whole_queries_and_selects_by_ndcg(tiny, tmp_path):
    from reldistill.recipe import load_recipe
    from reldistill.teacher.pairs import cap_queries, split_pairs
    from reldistill.teacher.train import train_teacher

    recipe = _lm_recipe(tiny, tmp_path / "r.yaml", epochs=2, eval_max_queries=2, select_best=True, checkpoint_fraction=0.5)
    dev_all = split_pairs(load_recipe(recipe).data)["dev"]
    capped = cap_queries(dev_all, 2, seed=0)
    assert capped["query_id"].nunique() == 2
    for q, g in capped.groupby("query_id"):  # every kept query keeps all its judged candidates
        assert len(g) == (dev_all["query_id"] == q).sum()
    assert capped.equals(cap_queries(dev_all, 2, seed=0))  # seeded
    with one_thread():
        out = train_teacher(load_recipe(recipe), tmp_path / "t", progress=False, runtime=TEST_RUNTIME)
    m = json.loads((out / "manifest.json").read_text())
    assert m["dev_queries"] == 2 and m["dev_pairs"] == len(capped) and m["select_metric"] == "ndcg@10"
    evals = [h for h in m["history"] if h["dev"]]
    assert all(h["dev"]["ndcg_queries"] == 2 for h in evals)
    best = max(evals, key=lambda h: h["dev"]["ndcg@10"])  # ties: the first (earliest) best wins
    assert m["chosen_step"] == best["step"] and m["dev_metrics"] == best["dev"]


def test_bundled_teacher_is_installed_only_for_the_same_data(tiny, tmp_path):
    import dataclasses

    from reldistill.recipe import load_recipe
    from reldistill.teacher import Teacher
    from reldistill.teacher.bundle import bundle_matches, install_bundle, make_bundle
    from reldistill.teacher.train import train_teacher

    recipe = load_recipe(_lm_recipe(tiny, tmp_path / "r.yaml", epochs=1))
    with one_thread():
        out = train_teacher(recipe, tmp_path / "t", progress=False, runtime=TEST_RUNTIME)
    src = make_bundle(out, tmp_path / "bundle", "python scripts/train_bundled_teacher.py", str(tiny["data"]))
    assert not (src / "checkpoints").exists() and (src / "adapter").is_dir()
    info = json.loads((src / "bundle.json").read_text())
    assert info["command"].startswith("python scripts/") and info["data_fingerprint"]
    assert bundle_matches(src, recipe.data) == (True, "")
    other = write_pairs_table(tmp_path / "other.csv", queries=5, seed=3)
    ok, why = bundle_matches(src, dataclasses.replace(recipe.data, path=str(other)))
    assert not ok and "other data" in why
    # same files, another dev carve (or other product text): the bundle chose on another dev, so it is not reused
    for change in ({"dev_fraction": 0.3}, {"seed": recipe.data.seed + 1}, {"text_fields": ["title"]}):
        ok, why = bundle_matches(src, dataclasses.replace(recipe.data, **change))
        assert not ok and next(iter(change)) in why, (change, why)
    # the tokenizer is not shipped: installing rebuilds it from the base model, byte for byte the trained one's
    assert not (src / "tokenizer").exists() and set(info["tokenizer_sha256"]) == {f.name for f in (out / "tokenizer").iterdir()}
    dest = tmp_path / "run" / "teacher"
    install_bundle(src, dest)
    assert {f.name: f.read_bytes() for f in (dest / "tokenizer").iterdir()} == {f.name: f.read_bytes() for f in (out / "tokenizer").iterdir()}
    s = Teacher.load(dest, dtype="float32", runtime=TEST_RUNTIME).score_pairs(["shoes red"], ["shoes mug item 1"])
    assert 0 <= s[0] <= 1
    # a base whose tokenizer differs from the trained one is refused with one sentence, and nothing is installed
    info["tokenizer_sha256"] = {k: "0" * 64 for k in info["tokenizer_sha256"]}
    (src / "bundle.json").write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(UserError, match="differs from the one the bundled teacher was trained with"):
        install_bundle(src, tmp_path / "run2" / "teacher")
    assert not (tmp_path / "run2" / "teacher").exists()


def test_bundle_tokenizer_digest_ignores_how_it_was_loaded_not_what_it_does(tmp_path):
    from reldistill.teacher.bundle import tokenizer_digests

    def folder(name: str, **cfg) -> dict:
        d = tmp_path / name
        d.mkdir()
        (d / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}}), encoding="utf-8")
        (d / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>", "bos_token": "<bos>", **cfg}, indent=2))
        return tokenizer_digests(d)

    # HF_HUB_OFFLINE flips local_files_only when transformers saves a tokenizer: the same tokenizer either way
    online = folder("online", is_local=True, local_files_only=False)
    assert folder("offline", is_local=True, local_files_only=True) == online
    assert folder("plain") == online
    # a different pad token is a different tokenizer
    assert folder("other-pad", pad_token="<eos>")["tokenizer_config.json"] != online["tokenizer_config.json"]


@pytest.mark.slow
def test_training_can_start_from_a_trained_teacher_and_widen_its_lora(tiny, tmp_path):
    """train.init_from: the start scores as the artifact (bundle or run), LoRA on more layers grows from B = 0,
    and an artifact this run cannot hold (LoRA outside its layers, another rank) is refused with one sentence."""
    from safetensors.torch import load_file

    from reldistill.recipe import load_recipe
    from reldistill.teacher import Teacher
    from reldistill.teacher.bundle import make_bundle
    from reldistill.teacher.train import train_teacher

    kw = dict(loss="listwise", bce_weight=0.5, group_size=4, batch_size=2, grad_accum=1, lr=5e-3, head_lr=5e-3,
              cache_dir=str(tmp_path / "cache"))
    pairs = (["shoes red", "tea big", "mug small"], ["shoes mug item 1", "tea lamp item 2", "pen hat item 0"])
    with one_thread():
        a = train_teacher(load_recipe(_lm_recipe(tiny, tmp_path / "a.yaml", epochs=1, train_layers=2, **kw)), tmp_path / "a",
                          progress=False, runtime=TEST_RUNTIME)
        src = make_bundle(a, tmp_path / "bundle", "python scripts/train_bundled_teacher.py", str(tiny["data"]))
        start = train_teacher(load_recipe(_lm_recipe(tiny, tmp_path / "s.yaml", max_steps=0, init_from=str(src), **kw)),
                              tmp_path / "s", progress=False, runtime=TEST_RUNTIME)
        more = train_teacher(load_recipe(_lm_recipe(tiny, tmp_path / "m.yaml", epochs=1, init_from=str(a), **kw)),
                             tmp_path / "m", progress=False, runtime=TEST_RUNTIME)
        score = {k: Teacher.load(d, dtype="float32", runtime=TEST_RUNTIME).score_pairs(*pairs) for k, d in
                 (("a", a), ("start", start), ("more", more))}
    np.testing.assert_allclose(score["start"], score["a"], rtol=1e-5, atol=1e-6)  # the start is the artifact
    ma, ms = (json.loads((d / "manifest.json").read_text()) for d in (a, start))
    assert ms["dev_metrics"]["ndcg@10"] == pytest.approx(ma["dev_metrics"]["ndcg@10"])
    # a bundle of a warm-started teacher names the bundle it started from (its command and commit)
    again = json.loads((make_bundle(start, tmp_path / "bundle2", "python x.py", str(tiny["data"])) / "bundle.json").read_text())
    assert again["started_from"] == {"path": str(src), "command": "python scripts/train_bundled_teacher.py",
                                     "commit": json.loads((src / "bundle.json").read_text())["commit"]}
    lora = load_file(str(more / "adapter" / "adapter_model.safetensors"))
    low = [v for k, v in lora.items() if ".layers.0." in k and "lora_B" in k]
    assert low and any(v.abs().max() > 0 for v in low), "the layers the artifact did not train learned from B = 0"
    assert not np.allclose(score["more"], score["a"])
    for change, why in (({"train_layers": 1}, "does not train"), ({}, "teacher.lora_r")):
        teacher = {"lora_r": 8} if not change else None
        bad = load_recipe(_lm_recipe(tiny, tmp_path / "bad.yaml", teacher=teacher, init_from=str(a), **{**kw, **change}))
        with pytest.raises(UserError, match=why), one_thread():
            train_teacher(bad, tmp_path / "bad", progress=False, runtime=TEST_RUNTIME)
