"""The cross-encoder: decoder (or encoder) backbone → last real token → score head → one relevance logit."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from reldistill.teacher.config import TeacherConfig

log = logging.getLogger(__name__)


class ScoreHead(nn.Module):
    """Pooled hidden state → one logit. ``mlp`` (seed): Linear–GELU–Dropout–Linear; ``linear``: one Linear."""

    def __init__(self, hidden_size: int, kind: str = "mlp", hidden: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, hidden), nn.GELU(),
                                     nn.Dropout(dropout), nn.Linear(hidden, 1))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, 1))

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
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: positions start at the first real token
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=False)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return self.head(last_token_pool(hidden, attention_mask))


def hidden_size_of(config: Any) -> int:
    for key in ("hidden_size", "d_model", "n_embd", "dim"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ValueError("cannot find the hidden size in the backbone config")


def build_head(backbone_config: Any, cfg: TeacherConfig) -> ScoreHead:
    return ScoreHead(hidden_size_of(backbone_config), cfg.head, cfg.head_hidden, cfg.head_dropout)


def lora_config(cfg: TeacherConfig):
    """The PEFT LoRA config of the recipe (no task type: the backbone is a bare base model)."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none")


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
