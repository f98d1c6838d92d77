"""The cross-encoder: decoder (or encoder) backbone → last real token → score head → one relevance logit."""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import nn

from reldistill.errors import UserError
from reldistill.recipe.teacher import TeacherConfig

log = logging.getLogger(__name__)


class ScoreHead(nn.Module):
    """Pooled hidden state → one logit. ``mlp`` (seed): Linear–GELU–Dropout–Linear; ``linear``: one Linear;
    ``lm``: one score row ``net.0`` = lm_head.weight[yes] − lm_head.weight[no] (+ a bias, 0 at start), so the
    logit is logit(yes) − logit(no) of the backbone's LM head on the final-normed hidden state."""

    def __init__(self, hidden_size: int, kind: str = "mlp", hidden: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, hidden), nn.GELU(),
                                     nn.Dropout(dropout), nn.Linear(hidden, 1))
        elif kind == "lm":
            self.net = nn.Sequential(nn.Linear(hidden_size, 1))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, 1))

    @torch.no_grad()
    def init_lm_row(self, lm_head_weight: torch.Tensor, yes_id: int, no_id: int, row_trainable: bool = False) -> None:
        """``lm`` head: set the score row to W[yes] − W[no] and the bias to 0 (the row frozen unless asked)."""
        row = self.net[0]
        row.weight.copy_((lm_head_weight[yes_id].float() - lm_head_weight[no_id].float())[None])
        row.bias.zero_()
        row.weight.requires_grad_(row_trainable)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled.float()).squeeze(-1)


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last real token (mask == 1), whatever the padding side.

    The position comes from the attention mask, never from a pad/EOS token id, so a real EOS
    inside the text is never mistaken for padding.
    """
    pos = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask.long() * (pos + 1)).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class CrossEncoder(nn.Module):
    """``backbone`` (a HF base model, possibly PEFT-wrapped) + ``head``; ``forward`` returns logits [batch]."""

    def __init__(self, backbone: nn.Module, head: ScoreHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask),
                            use_cache=False)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return self.head(last_token_pool(hidden, attention_mask))

    def prefix_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, split: int) -> torch.Tensor:
        """Hidden states after the first ``split`` decoder layers (before the final norm) — the frozen prefix."""
        with _layers(self.backbone, 0, split, final_norm=False) as base:
            out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask), use_cache=False)
        return out.last_hidden_state

    def forward_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, split: int) -> torch.Tensor:
        """Logits from prefix states: decoder layers ``split..`` + final norm + pooling + head (same as ``forward``)."""
        with _layers(self.backbone, split, None, final_norm=True) as base:
            out = base(inputs_embeds=hidden, attention_mask=attention_mask, position_ids=positions(attention_mask), use_cache=False)
        return self.head(last_token_pool(out.last_hidden_state, attention_mask))


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Left padding: positions start at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def decoder_of(backbone: nn.Module) -> nn.Module:
    """The bare decoder (``.layers``, ``.norm``) inside a possibly PEFT-wrapped backbone."""
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    if not hasattr(base, "layers") or not hasattr(base, "norm"):
        raise ValueError(f"{type(base).__name__} has no .layers/.norm: train.train_layers needs a decoder backbone")
    return base


class _layers:
    """Run the decoder on layers ``[start:end]`` only (final norm on or off), restoring it afterwards."""

    def __init__(self, backbone: nn.Module, start: int, end: int | None, final_norm: bool):
        self.base = decoder_of(backbone)
        self.start, self.end, self.final_norm = start, end, final_norm

    def __enter__(self) -> nn.Module:
        b = self.base
        self.types = getattr(b.config, "layer_types", None)  # per-layer attention kinds (Gemma 3: sliding/full), by index
        self.saved = (b.layers, b.norm)
        b.layers = nn.ModuleList(list(self.saved[0])[self.start:self.end])
        if self.types is not None:
            b.config.layer_types = list(self.types)[self.start:self.end]
        if not self.final_norm:
            b.norm = nn.Identity()
        return b

    def __exit__(self, *exc) -> bool:
        self.base.layers, self.base.norm = self.saved
        if self.types is not None:
            self.base.config.layer_types = self.types
        return False


def hidden_size_of(config: Any) -> int:
    for key in ("hidden_size", "d_model", "n_embd", "dim"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ValueError("cannot find the hidden size in the backbone config")


def build_head(backbone_config: Any, cfg: TeacherConfig) -> ScoreHead:
    return ScoreHead(hidden_size_of(backbone_config), cfg.head, cfg.head_hidden, cfg.head_dropout)


def answer_token_ids(tokenizer, cfg: TeacherConfig) -> list[int]:
    """Ids of ``teacher.answer_tokens`` ([yes, no]); each must be exactly one token of the tokenizer."""
    ids = []
    for t in cfg.answer_tokens:
        enc = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise UserError(f"teacher.answer_tokens entry {t!r} is {len(enc)} tokens for this tokenizer, not one — "
                            "pick answer words that are single tokens (e.g. ' yes', ' no').")
        ids.append(int(enc[0]))
    return ids


def num_layers(backbone: nn.Module) -> int:
    return len(decoder_of(backbone).layers)


def lora_config(cfg: TeacherConfig, layers: list[int] | None = None):
    """The PEFT LoRA config of the recipe (no task type: the backbone is a bare base model); ``layers``: only these."""
    from peft import LoraConfig

    targets: list[str] | str = list(cfg.target_modules)
    if layers is not None:  # a full-match regex: PEFT's layers_to_transform misses a bare model's top-level `layers.N`
        targets = rf"(.*\.)?layers\.({'|'.join(map(str, layers))})\.(.*\.)?({'|'.join(map(re.escape, cfg.target_modules))})"
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``module`` (bitsandbytes 4-bit tensors counted by their logical size)."""
    total = 0
    for p in module.parameters():
        if trainable_only and not p.requires_grad:
            continue
        n = p.numel()
        if getattr(p, "quant_state", None) is not None:  # Params4bit packs two values per byte
            n = int(torch.Size(p.quant_state.shape).numel())
        total += n
    return total
