"""The teacher artifact on disk: PEFT adapter + score head + tokenizer + recipe + manifest.

```
teacher/
  adapter/            PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
  head.safetensors    score-head weights
  tokenizer/          tokenizer with its (non-EOS) pad token
  teacher.json        the `teacher:` recipe section
  base/               only for self-contained artifacts (tiny test teacher): the base model itself
  manifest.json       kind "teacher", base model, metrics, data fingerprint... (written last)
```
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from reldistill.artifacts import atomic_path, read_manifest, write_manifest
from reldistill.config import from_dict
from reldistill.errors import UserError
from reldistill.recipe.teacher import TeacherConfig

KIND = "teacher"
ADAPTER_DIR = "adapter"
HEAD_FILE = "head.safetensors"
TOKENIZER_DIR = "tokenizer"
RECIPE_FILE = "teacher.json"
BASE_DIR = "base"


def save_trainables(out_dir: Path, model, tokenizer, cfg: TeacherConfig) -> None:
    """Write adapter, head, tokenizer and recipe into ``out_dir`` (no manifest)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    if hasattr(backbone, "peft_config"):
        backbone.save_pretrained(str(out_dir / ADAPTER_DIR))
    head = {k: v.detach().float().cpu().contiguous() for k, v in model.head.state_dict().items()}
    save_file(head, str(out_dir / HEAD_FILE))
    tokenizer.save_pretrained(str(out_dir / TOKENIZER_DIR))
    (out_dir / RECIPE_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", encoding="utf-8")


def save_teacher(final_dir: str | Path, model, tokenizer, cfg: TeacherConfig, base_model: str,
                 base_dir: Path | None = None, **manifest: Any) -> Path:
    """Atomically write a complete teacher artifact; ``base_dir`` (optional) is copied in as ``base/``."""
    final_dir = Path(final_dir)
    with atomic_path(final_dir) as tmp:
        save_trainables(tmp, model, tokenizer, cfg)
        if base_dir is not None:
            shutil.copytree(base_dir, tmp / BASE_DIR)
        write_manifest(tmp, KIND, base_model=BASE_DIR if base_dir is not None else base_model,
                       base_inside=base_dir is not None, teacher=dataclasses.asdict(cfg), **manifest)
    return final_dir


@dataclasses.dataclass
class ArtifactFiles:
    root: Path
    manifest: dict[str, Any]
    cfg: TeacherConfig
    base: str  # model name for resolve_model, or a folder


def open_artifact(directory: str | Path, tokenizer: bool = True) -> ArtifactFiles:
    """Check a teacher directory is complete; each missing or broken part is a UserError.

    ``tokenizer=False``: the weights alone (a bundle, whose tokenizer is rebuilt at install, will do)."""
    d = Path(directory)
    if not d.is_dir():
        raise UserError(f"teacher directory {d} does not exist — train one with `reldistill teacher train` or pass --teacher.")
    m = read_manifest(d, KIND)
    for rel in (HEAD_FILE, RECIPE_FILE) + ((TOKENIZER_DIR,) if tokenizer else ()):
        if not (d / rel).exists():
            raise UserError(f"teacher {d} is missing {rel} — the artifact is incomplete; retrain or copy it again.")
    if m.get("teacher", {}).get("lora_r", 0) and not (d / ADAPTER_DIR / "adapter_model.safetensors").is_file():
        raise UserError(f"teacher {d} is missing {ADAPTER_DIR}/adapter_model.safetensors — the LoRA adapter is gone; retrain or copy it again.")
    try:
        raw = json.loads((d / RECIPE_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{d / RECIPE_FILE} is not valid JSON — the artifact is corrupted; retrain.") from None
    cfg = from_dict(TeacherConfig, raw, str(d / RECIPE_FILE))
    base = str(d / m["base_model"]) if m.get("base_inside") else str(m.get("base_model") or cfg.model)
    return ArtifactFiles(d, m, cfg, base)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file of the artifact (head, adapter); unreadable is a UserError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read ({str(e)[:100]}) — the file is truncated or corrupted; retrain or copy it again.") from None


def load_head(head, root: Path, where: str = "", fix: str = " — retrain") -> None:
    """Load the artifact in ``root``'s head weights into ``head``; a shape or name mismatch is a UserError."""
    try:
        head.load_state_dict(read_tensors(root / HEAD_FILE))
    except RuntimeError as e:
        raise UserError(f"{where}{root / HEAD_FILE} does not match the recipe's head ({str(e).splitlines()[0][:100]}){fix}.") from None


# Recipe fields a warm start must share with the artifact it starts from (the LoRA's layer set may grow).
INIT_FIELDS = ("model", "head", "answer_tokens", "lora_r", "lora_alpha", "template", "head_hidden", "load_in_4bit")


def load_init_weights(model, cfg: TeacherConfig, directory: str | Path) -> int:
    """Start ``model`` (a fresh cross-encoder of ``cfg``) from a teacher artifact's LoRA and head (train.init_from).

    The artifact must share ``INIT_FIELDS`` with ``cfg``; every LoRA tensor it holds must land in the model (LoRA
    on layers the artifact did not train starts from PEFT's init, B = 0, so the start scores as the artifact).
    Returns the number of LoRA tensors loaded."""
    from peft import set_peft_model_state_dict

    art = open_artifact(directory, tokenizer=False)
    for f in INIT_FIELDS:
        if getattr(art.cfg, f, None) != getattr(cfg, f, None):
            raise UserError(f"train.init_from {art.root} has teacher.{f} = {getattr(art.cfg, f, None)!r}, this recipe "
                            f"{getattr(cfg, f, None)!r} — start from a teacher of the same recipe or drop train.init_from.")
    loaded = 0
    if cfg.lora_r > 0:
        state = read_tensors(art.root / ADAPTER_DIR / "adapter_model.safetensors")
        result = set_peft_model_state_dict(model.backbone, state)
        missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if missing:
            raise UserError(f"train.init_from {art.root} has LoRA weights this run does not train ({missing[0]}) — "
                            "widen train.train_layers / teacher.target_modules to cover the artifact's.")
        loaded = len(state)
    load_head(model.head, art.root, "train.init_from ", "")
    return loaded
