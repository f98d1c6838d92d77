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

On a CPU (``device="cpu"``: what a process's resident memory, RSS, peaks at) the reserve is the Python process
with torch, transformers, PEFT and accelerate imported (0.5 GiB, measured), and the peak is the larger of
training (as above) and loading: while the backbone is copied into the training precision the checkpoint's
weights (memory-mapped safetensors, in the config's ``torch_dtype``) are resident too. Measured on
Llama-3.2-1B fp32 from a bf16 checkpoint: 7.39 GiB peak, 5.1 GiB after the load.

Beside the recipe's figure the plan gives the bf16 and 4-bit (QLoRA, NF4) totals, so a user sees what
``teacher.load_in_4bit`` buys before choosing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reldistill.errors import UserError
from reldistill.models import resolve_model
from reldistill.recipe import Recipe
from reldistill.settings import Runtime

GIB = 1024**3
CUDA_RESERVE_GIB = 1.5
CPU_PROCESS_GIB = 0.5  # python + torch + transformers + peft + accelerate imported (RSS)
DEVICES = ("gpu", "cpu")
GPUS = {"A100-40GB": 40, "A100-80GB": 80, "H100-80GB": 80}


def load_architecture(recipe: Recipe, runtime: Runtime | None = None):
    """The backbone's transformers config: ``teacher.model_config`` if set, else from the resolved model (offline where
    ``runtime`` says so)."""
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
    r = resolve_model(tc.model, runtime)
    try:
        return AutoConfig.from_pretrained(**r.from_pretrained_kwargs(), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the architecture of {tc.model!r} ({str(e).splitlines()[0][:120]}) — "
                        "set teacher.model_config to its config.json.") from None


def plan_teacher(recipe: Recipe, device: str = "gpu", process_gib: float | None = None, *,
                 runtime: Runtime | None = None) -> dict[str, Any]:
    """Parameter counts (backbone, LoRA, head, total) and estimated training memory for a recipe on ``device``
    (gpu: CUDA memory; cpu: peak RSS of one training process). ``process_gib``: the CPU reserve measured on
    this machine (the RSS of a process with the training stack imported) instead of the 0.5 GiB default."""
    tc, tr = recipe.teacher, recipe.train
    if device not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}.")
    if tc.model_config and not Path(tc.model_config).is_file():
        raise UserError(f"teacher.model_config {tc.model_config} does not exist — point it at an architecture config.json (see configs/llama-3.2-1b/).")
    import torch
    from peft import get_peft_model

    from reldistill.teacher.model import build_head, count_parameters, lora_config  # loads torch: after the checks

    arch = load_architecture(recipe, runtime)
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
    # head lm: the yes−no row is frozen unless teacher.lm_row_trainable; its bias always trains
    head_trainable = 1 if tc.head == "lm" and not tc.lm_row_trainable else head_params

    counts = {"base": base_params, "linear": linear_params, "trainable": lora_params + head_trainable,
              "checkpoint_bytes": _dtype_bytes(getattr(arch, "dtype", None))}
    precision = tr.precision if tr.precision != "auto" else "bfloat16"  # auto is planned as bf16 (GPUs have it)
    est = memory_estimate(arch, tc, tr, counts, "bf16" if precision == "bfloat16" else "fp32", tc.load_in_4bit, device,
                          process_gib)
    est["by_precision_gib"] = {
        "bf16": memory_estimate(arch, tc, tr, counts, "bf16", False, device, process_gib)["total_gib"],
        "4bit_nf4": memory_estimate(arch, tc, tr, counts, "bf16", True, device, process_gib)["total_gib"]}
    trainable = counts["trainable"]
    h, layers = arch.hidden_size, arch.num_hidden_layers
    return {
        "config": str(recipe.path) if recipe.path else None,
        "backbone": {"model": tc.model, "architecture": type(arch).__name__.removesuffix("Config"),
                     "hidden_size": h, "layers": layers, "vocab_size": getattr(arch, "vocab_size", None),
                     "parameters": base_params},
        "lora": {"r": tc.lora_r, "alpha": tc.lora_alpha, "dropout": tc.lora_dropout,
                 "target_modules": list(tc.target_modules), "trainable_parameters": lora_params},
        "head": {"kind": tc.head, "hidden": tc.head_hidden if tc.head == "mlp" else None, "parameters": head_params,
                 "trainable_parameters": head_trainable},
        "trainable_parameters": trainable,
        "total_parameters": base_params + head_params + lora_params,
        "trainable_percent": round(100 * trainable / (base_params + head_params + lora_params), 3),
        "training_memory_estimate": est,
    }


def _dtype_bytes(dtype: Any) -> int:
    name = str(dtype or "float32").removeprefix("torch.")
    return 2 if name in ("bfloat16", "float16") else 4


def memory_estimate(arch, tc, tr, counts: dict[str, int], precision: str, four_bit: bool, device: str,
                    process_gib: float | None = None) -> dict[str, Any]:
    """Training memory (GiB) of one process/device: weights, trainables + AdamW, activations, reserve (see module doc)."""
    act_bytes = 2 if precision == "bf16" else 4
    base, linear = counts["base"], counts["linear"]
    if four_bit:
        weight_bytes = linear * (0.5 + 4 / 64 / 8) + (base - linear) * act_bytes
    else:
        weight_bytes = base * act_bytes
    optim_bytes = counts["trainable"] * 16
    h, layers, s, b = arch.hidden_size, arch.num_hidden_layers, tc.max_length, tr.batch_size
    per_layer = s * b * h * 34 * act_bytes / 2
    act = (layers * 2 * s * b * h * act_bytes / 2 + per_layer) if tr.gradient_checkpointing else layers * per_layer
    if device == "cpu":
        reserve = CPU_PROCESS_GIB if process_gib is None else round(process_gib, 3)
        load_bytes = 0 if four_bit else base * counts["checkpoint_bytes"]  # the mmapped checkpoint, during the load
        total_gib = (weight_bytes + max(optim_bytes + act, load_bytes)) / GIB + reserve
    else:
        reserve, load_bytes = CUDA_RESERVE_GIB, 0
        total_gib = (weight_bytes + optim_bytes + act) / GIB + reserve
    return {
        "device": device, "precision": precision, "load_in_4bit": four_bit,
        "batch_size_per_device": b, "max_length": s, "gradient_checkpointing": tr.gradient_checkpointing,
        "weights_gib": round(weight_bytes / GIB, 3), "trainable_and_optimizer_gib": round(optim_bytes / GIB, 3),
        "activations_gib": round(act / GIB, 3), "checkpoint_while_loading_gib": round(load_bytes / GIB, 3),
        "reserve_gib": reserve, "total_gib": round(total_gib, 2),
        "fits": {gpu: total_gib <= cap for gpu, cap in GPUS.items()} if device == "gpu" else {},
    }
