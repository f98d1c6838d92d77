"""A tiny random sentence-transformers student for tests: MiniLM's tokenizer over a 1-layer BERT."""

from __future__ import annotations

from pathlib import Path


def build_tiny_student(out_dir: str | Path, dim: int = 32, max_seq_length: int = 64, normalize: bool = False,
                       seed: int | None = None) -> Path:
    """Write a random 1-layer BERT sentence-transformer (mean pooling) to ``out_dir/st``, fully offline
    (``seed``: the same weights every time, without touching the caller's random state)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from reldistill.models import resolve_model

    out_dir = Path(out_dir)
    base = out_dir / "hf"
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm-l6").path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=dim, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=dim * 2, max_position_embeddings=128)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        BertModel(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    modules = [models.Transformer(str(base), max_seq_length=max_seq_length), models.Pooling(dim, "mean")]
    if normalize:
        modules.append(models.Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(out_dir / "st"))
    return out_dir / "st"
