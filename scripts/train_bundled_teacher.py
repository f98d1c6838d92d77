"""Train the demo's bundled teacher once and ship it: ``python scripts/train_bundled_teacher.py``.

Trains configs/demo-cpu.yaml's teacher on the sample's train split with a larger time budget than the
demo has (``--minutes``), then copies the artifact (adapter + head + tokenizer + manifest, no
checkpoints) to the recipe's ``train.bundled`` folder with bundle.json (this command, the data
fingerprint, the commit). `reldistill demo` reuses it; `reldistill demo --train-teacher` retrains.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/demo-cpu.yaml")
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (the prefix cache is built first)")
    ap.add_argument("--output", default="runs/bundled-teacher/teacher")
    a = ap.parse_args()
    os.chdir(REPO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from reldistill.recipe import load_recipe
    from reldistill.teacher.bundle import bundle_dir, make_bundle
    from reldistill.teacher.train import train_teacher

    recipe = load_recipe(a.config)
    if not recipe.train.bundled:
        sys.exit(f"{a.config} has no train.bundled folder to write")
    out = train_teacher(recipe, a.output, resume=False, max_minutes=a.minutes)
    dest = make_bundle(Path(out), bundle_dir(recipe.train.bundled), " ".join(["python", *sys.argv]), recipe.data.path)
    print(f"bundled teacher written to {dest}")


if __name__ == "__main__":
    main()
