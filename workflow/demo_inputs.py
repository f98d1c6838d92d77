"""The demo's inputs (recipe, budget, data path), checked before any stage library loads: a bad flag is one
sentence in about a second, not after the ten seconds that torch, transformers and sentence-transformers take."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from reldistill.data import check_data_path
from reldistill.errors import UserError
from reldistill.recipe import Recipe, load_recipe, override

MIN_BUDGET_MINUTES = 3


def demo_recipe(config: str | Path, budget_minutes: float | None = None, data_path: str | None = None) -> Recipe:
    """The validated recipe the demo runs: ``data_path`` overrides its data.path, which must exist."""
    if budget_minutes is not None and budget_minutes < MIN_BUDGET_MINUTES:
        raise UserError(f"--budget-minutes must be at least {MIN_BUDGET_MINUTES}, got {budget_minutes:g}.")
    recipe = load_recipe(config)  # every section, validated before any stage runs
    recipe = dataclasses.replace(recipe, data=override(recipe.data, path=data_path or None))
    check_data_path(recipe.data)
    return recipe
