"""A tiny RANDOM Llama teacher, built offline in seconds, for unit tests of everything downstream.

The tokenizer is a byte-level BPE trained on the fly with the ``tokenizers`` library; like
Llama-3 it has BOS/EOS but no pad token (the teacher picks ``<|finetune_right_pad_id|>``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

_CORPUS = [
    "wireless bluetooth headphones noise cancelling over ear", "running shoes for men size 10 black",
    "stainless steel water bottle 32 oz", "usb c charger fast charging cable", "kids toys for 3 year old girls",
    "organic green tea bags 100 count", "phone case iphone 13 clear", "dog food grain free small breed",
    "laptop stand adjustable aluminum", "coffee maker with grinder", "Query: Product: Relevant: | brand color",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 .,;:!?'\"()[]{}-_/&%$#@+*=<>",
]
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"]


def build_tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE fast tokenizer with Llama-3-style specials (BOS, EOS, reserved pad; no pad set)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL[0], eos_token=SPECIAL[1])


def build_tiny_base(out_dir: str | Path, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Path:
    """Write a random tiny LlamaModel + its tokenizer to ``out_dir`` (a model folder resolve_model accepts)."""
    from transformers import LlamaConfig, LlamaModel

    out = Path(out_dir)
    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=None, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaModel(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def tiny_teacher_config(**overrides):
    from reldistill.recipe.teacher import TeacherConfig

    base = dict(model="tiny", head="mlp", head_hidden=16, head_dropout=0.0, lora_r=4, lora_alpha=8,
                lora_dropout=0.0, max_length=64)
    base.update(overrides)
    return TeacherConfig(**base)


def build_tiny_teacher(out_dir: str | Path, seed: int = 0, random_head: bool = True, **overrides) -> Path:
    """Write a complete, self-contained tiny random teacher artifact that ``Teacher.load`` accepts.

    LoRA B matrices and the head (unless ``random_head`` is false) are random (not zero), so merging and
    scoring are exercised and different candidates get different scores. ``overrides`` go to the recipe.
    """
    from reldistill.teacher.artifact import save_teacher
    from reldistill.teacher.teacher import build_cross_encoder

    with tempfile.TemporaryDirectory(prefix="tiny-base-") as tmp:
        base = build_tiny_base(Path(tmp) / "base", seed)
        cfg = tiny_teacher_config(**overrides)
        torch.manual_seed(seed)
        model, tok, _ = build_cross_encoder(cfg, torch.float32, base=str(base))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name or (random_head and name.startswith("head.")):
                    p.copy_(torch.randn_like(p) * 0.5)
        from reldistill.teacher.inputs import choose_pad_token

        choose_pad_token(tok)
        return save_teacher(out_dir, model, tok, cfg, base_model="tiny-random-llama", base_dir=base,
                            source="tests.builders.tiny_teacher", seed=seed)
