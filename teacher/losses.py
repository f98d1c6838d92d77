"""Ranking losses over query groups: listwise softmax cross-entropy vs the soft-label distribution, RankNet, + BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def group_matrix(values: torch.Tensor, group: torch.Tensor, fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``values`` (flat, grouped contiguously by ``group`` ids 0..G-1) → [G, max size] padded with ``fill`` + mask."""
    n_groups = int(group.max()) + 1
    sizes = torch.bincount(group, minlength=n_groups)
    width = int(sizes.max())
    starts = torch.cumsum(sizes, 0) - sizes
    col = torch.arange(len(group), device=group.device) - starts[group]
    out = torch.full((n_groups, width), fill, dtype=values.dtype, device=values.device)
    mask = torch.zeros((n_groups, width), dtype=torch.bool, device=values.device)
    out[group, col] = values
    mask[group, col] = True
    return out, mask


def listwise_loss(logits: torch.Tensor, labels: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of each group's scores against its soft labels normalised to a distribution.

    Groups whose labels are all 0 carry no target and are skipped (0 when none is left).
    """
    s, mask = group_matrix(logits, group, float("-inf"))
    y, _ = group_matrix(labels, group, 0.0)
    total = y.sum(1)
    keep = total > 0
    if not keep.any():
        return logits.sum() * 0.0
    target = y[keep] / total[keep, None]
    logp = F.log_softmax(s[keep], dim=1).masked_fill(~mask[keep], 0.0)
    return -(target * logp).sum(1).mean()


def ranknet_loss(logits: torch.Tensor, labels: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss log(1 + exp(-(s_i - s_j))) over same-group pairs with label_i > label_j."""
    s, mask = group_matrix(logits, group, 0.0)
    y, _ = group_matrix(labels, group, 0.0)
    better = (y[:, :, None] > y[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    if not better.any():
        return logits.sum() * 0.0
    diff = s[:, :, None] - s[:, None, :]
    return F.softplus(-diff[better]).mean()


def teacher_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor, group: torch.Tensor | None,
                 bce_weight: float = 0.0) -> torch.Tensor:
    """``bce`` (pointwise on soft labels) or ``listwise``/``ranknet`` over ``group`` + ``bce_weight`` × BCE."""
    bce = F.binary_cross_entropy_with_logits(logits, labels)
    if kind == "bce":
        return bce
    rank = listwise_loss(logits, labels, group) if kind == "listwise" else ranknet_loss(logits, labels, group)
    return rank + bce_weight * bce if bce_weight else rank
