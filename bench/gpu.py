"""GPU bench (runs only when ``torch.cuda.is_available()``): the Llama-3.2-1B-shaped teacher with random
weights from the shipped ``configs/llama-3.2-1b/config.json`` — scoring and LoRA training tokens/s and MFU.

MFU = model FLOPs/s ÷ the bf16 matmul peak measured on the same GPU in the same run (8192² matmul).
Scoring counts 2·N·tokens; LoRA training counts 4·N·tokens (forward 2N + activation-gradient backward
2N — the frozen base weights get no weight gradient; the LoRA weights' own FLOPs are < 1% and left
out). N excludes the input embedding table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reldistill.bench.compute import matmul_params, matmul_peak
from reldistill.errors import UserError


def _timed_cuda(fn, steps: int) -> float:
    import torch

    fn()  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def gpu_teacher_bench(config_path: str | Path, seq_len: int = 128, batch: int = 32, steps: int = 10,
                      lora_r: int = 128) -> dict[str, Any]:
    """Scoring and LoRA-training throughput of a random-weight teacher of the given architecture."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModel


    if not torch.cuda.is_available():
        raise UserError("the GPU bench needs CUDA — run it on a machine with a GPU.")
    path = Path(config_path)
    if not path.is_file():
        raise UserError(f"{path} does not exist — pass bench.gpu_model_config pointing at a model config.json.")
    try:
        cfg = AutoConfig.for_model(**json.loads(path.read_text()))
    except (ValueError, KeyError) as e:
        raise UserError(f"{path} is not a transformers model config ({e}) — fix the file.") from None
    peak = matmul_peak(8192, "bfloat16", repeats=5, device="cuda")
    torch.manual_seed(0)
    model = AutoModel.from_config(cfg, dtype=torch.bfloat16).cuda().eval()
    n_params = matmul_params(model)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq_len), device="cuda")
    mask = torch.ones_like(ids)
    head = torch.nn.Linear(cfg.hidden_size, 1, dtype=torch.bfloat16, device="cuda")
    tokens = batch * seq_len

    def score():
        with torch.inference_mode():
            h = model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            head(h[:, -1])

    score_s = _timed_cuda(score, steps)
    lora = get_peft_model(model.train(), LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.05,
                                                    target_modules=["q_proj", "v_proj"]))
    params = [p for p in lora.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5)
    target = torch.rand(batch, device="cuda", dtype=torch.bfloat16)

    def train_step():
        h = lora(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(h[:, -1]).squeeze(-1).float(), target.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    train_s = _timed_cuda(train_step, steps)
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    score_flops = 2 * n_params * tokens / score_s
    train_flops = 4 * n_params * tokens / train_s
    return {
        "gpu": torch.cuda.get_device_name(0), "config": str(path), "matmul_params": n_params,
        "lora_trainable_params": trainable, "batch": batch, "seq_len": seq_len,
        "bf16_matmul_peak_tflops": peak["gflops"] / 1e3,
        "scoring": {"tokens_per_s": tokens / score_s, "pairs_per_s": batch / score_s, "tflops": score_flops / 1e12,
                    "mfu": score_flops / (peak["gflops"] * 1e9)},
        "training": {"tokens_per_s": tokens / train_s, "pairs_per_s": batch / train_s, "tflops": train_flops / 1e12,
                     "mfu": train_flops / (peak["gflops"] * 1e9)},
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
