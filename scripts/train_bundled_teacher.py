"""Train the demo's bundled teacher once and ship it: ``python scripts/train_bundled_teacher.py``.

Trains configs/demo-cpu.yaml's teacher on its data's train split (esci-extended) with a larger time budget than the
demo has (``--minutes``), then copies the artifact (adapter + head + manifest; the tokenizer is rebuilt from the base at install; no
checkpoints) to the recipe's ``train.bundled`` folder with bundle.json (this command, the data
fingerprint, the commit). `reldistill demo` reuses it; `reldistill demo --train-teacher` retrains.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from reldistill.settings import Runtime

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/demo-cpu.yaml")
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (the prefix cache is built first)")
    ap.add_argument("--output", default="runs/bundled-teacher/teacher")
    ap.add_argument("--epochs", type=float, default=None, help="override train.epochs (the schedule's length)")
    ap.add_argument("--cpu-threads", type=int, default=None, help="override train.cpu_threads (default: the recipe's)")
    ap.add_argument("--train-layers", type=int, default=None, help="override train.train_layers (0: LoRA on every layer)")
    ap.add_argument("--init-from", default=None, help="train.init_from: start from this trained teacher (e.g. the bundle "
                    "a previous commit shipped; copy it out first, as this command replaces the bundle folder)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    a = ap.parse_args()
    os.chdir(REPO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from reldistill.recipe import load_recipe
    from reldistill.teacher.bundle import bundle_dir, make_bundle
    from reldistill.teacher.calibrate import calibrate_teacher
    from reldistill.teacher.train import train_teacher

    recipe = load_recipe(a.config)
    train = dataclasses.replace(recipe.train, max_minutes=None,
                                **({"epochs": a.epochs} if a.epochs else {}),
                                **({"cpu_threads": a.cpu_threads} if a.cpu_threads else {}),
                                **({"train_layers": a.train_layers} if a.train_layers is not None else {}),
                                **({"init_from": a.init_from} if a.init_from else {}))
    recipe = dataclasses.replace(recipe, train=train)
    if not recipe.train.bundled:
        sys.exit(f"{a.config} has no train.bundled folder to write")
    runtime = Runtime.from_env()  # resolved once, here at the edge: training and calibration share it
    out = train_teacher(recipe, a.output, resume=a.resume, max_minutes=a.minutes, runtime=runtime)
    # training calibrates on the dev queries it ranks; the demo's calibration is offered the whole dev split and would rescore it
    # (~2 min on 2 cores) unless the bundle already holds that fit, in float32 as the demo scores on a CPU without bf16
    calibrate_teacher(out, recipe.data, dtype="float32", runtime=runtime)
    dest = make_bundle(Path(out), bundle_dir(recipe.train.bundled), " ".join(["python", *sys.argv]), recipe.data.path)
    print(f"bundled teacher written to {dest}")


if __name__ == "__main__":
    main()
