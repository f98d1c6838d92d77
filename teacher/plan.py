"""`teacher plan`: parameter counts and training-memory estimate from the architecture alone (meta device).

Nothing is downloaded: the backbone is built from its config.json on the meta device, wrapped
with the recipe's LoRA through PEFT, and counted. The memory estimate is a first-order model:

* frozen base weights at the training precision (NF4 ≈ 0.5 byte/param plus quant constants
  for QLoRA linear layers),
* trainable parameters (LoRA + head): fp32 weight + fp32 grad + AdamW m and v = 16 bytes each,
* activations per layer ≈ s·b·h·34 bytes in 16-bit (Korthikanti et al. 2022, with fused SDPA
  attention so the s² score term is absent), doubled in fp32; with gradient checkpointing only
  each layer's input (2·s·b·h bytes) plus one layer's full activations are kept,
* a fixed CUDA context / allocator reserve of 1.5 GiB.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reldistill.errors import UserError
from reldistill.recipe import Recipe

GIB = 1024**3
CUDA_RESERVE_GIB = 1.5
GPUS = {"A100-40GB": 40, "A100-80GB": 80, "H100-80GB": 80}


def load_architecture(recipe: Recipe):
    """The backbone's transformers config: ``teacher.model_config`` if set, else from the resolved model."""
    from transformers import AutoConfig

    tc = recipe.teacher
    if tc.model_config:
        p = Path(tc.model_config)
        if not p.is_file():
            raise UserError(f"teacher.model_config {p} does not exist — point it at an architecture config.json (see configs/llama-3.2-1b/).")
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise UserError(f"teacher.model_config {p} is not valid JSON — fix the file.") from None
        model_type = raw.pop("model_type", None)
        if not model_type:
            raise UserError(f"teacher.model_config {p} has no 'model_type' — add it (e.g. \"llama\").")
        return AutoConfig.for_model(model_type, **raw)
    from reldistill.models import resolve_model

    r = resolve_model(tc.model)
    try:
        return AutoConfig.from_pretrained(**r.from_pretrained_kwargs(), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the architecture of {tc.model!r} ({str(e).splitlines()[0][:120]}) — "
                        "set teacher.model_config to its config.json.") from None


def plan_teacher(recipe: Recipe) -> dict[str, Any]:
    """Parameter counts (backbone, LoRA, head, total) and estimated training memory for a recipe."""
    tc, tr = recipe.teacher, recipe.train
    if tc.model_config and not Path(tc.model_config).is_file():
        raise UserError(f"teacher.model_config {tc.model_config} does not exist — point it at an architecture config.json (see configs/llama-3.2-1b/).")
    import torch
    from peft import get_peft_model

    from reldistill.teacher.model import build_head, count_parameters, lora_config

    arch = load_architecture(recipe)
    from transformers import AutoModel

    with torch.device("meta"):
        backbone = AutoModel.from_config(arch)
        base_params = count_parameters(backbone)
        linear_params = sum(m.weight.numel() for m in backbone.modules() if isinstance(m, torch.nn.Linear))
        if tc.lora_r > 0:
            backbone = get_peft_model(backbone, lora_config(tc))
            lora_params = count_parameters(backbone, trainable_only=True)
        else:
            lora_params = 0
        head_params = count_parameters(build_head(arch, tc))

    precision = tr.precision if tr.precision != "auto" else "bfloat16"  # auto is planned as bf16 (GPUs have it)
    act_bytes = 2 if precision == "bfloat16" else 4
    if tc.load_in_4bit:
        weight_bytes = linear_params * (0.5 + 4 / 64 / 8) + (base_params - linear_params) * act_bytes
    else:
        weight_bytes = base_params * act_bytes
    trainable = lora_params + head_params
    optim_bytes = trainable * 16
    h, layers, s, b = arch.hidden_size, arch.num_hidden_layers, tc.max_length, tr.batch_size
    per_layer = s * b * h * 34 * act_bytes / 2
    act = (layers * 2 * s * b * h * act_bytes / 2 + per_layer) if tr.gradient_checkpointing else layers * per_layer
    total_gib = (weight_bytes + optim_bytes + act) / GIB + CUDA_RESERVE_GIB
    est = {
        "precision": "bf16" if precision == "bfloat16" else "fp32", "load_in_4bit": tc.load_in_4bit,
        "batch_size_per_device": b, "max_length": s, "gradient_checkpointing": tr.gradient_checkpointing,
        "weights_gib": round(weight_bytes / GIB, 3), "trainable_and_optimizer_gib": round(optim_bytes / GIB, 3),
        "activations_gib": round(act / GIB, 3), "reserve_gib": CUDA_RESERVE_GIB, "total_gib": round(total_gib, 2),
        "fits": {gpu: total_gib <= cap for gpu, cap in GPUS.items()},
    }
    return {
        "config": str(recipe.path) if recipe.path else None,
        "backbone": {"model": tc.model, "architecture": type(arch).__name__.removesuffix("Config"),
                     "hidden_size": h, "layers": layers, "vocab_size": getattr(arch, "vocab_size", None),
                     "parameters": base_params},
        "lora": {"r": tc.lora_r, "alpha": tc.lora_alpha, "dropout": tc.lora_dropout,
                 "target_modules": list(tc.target_modules), "trainable_parameters": lora_params},
        "head": {"kind": tc.head, "hidden": tc.head_hidden if tc.head == "mlp" else None, "parameters": head_params},
        "trainable_parameters": trainable,
        "total_parameters": base_params + trainable,
        "trainable_percent": round(100 * trainable / (base_params + trainable), 3),
        "training_memory_estimate": est,
    }
