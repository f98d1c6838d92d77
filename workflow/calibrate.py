"""`reldistill calibrate --run R`: fit (or verify) the calibration of a run's teacher and students on its dev split.

The composition root's one call for calibration: the demo runs it before eval (a bundled teacher was
calibrated on other data, or not at all), and a user runs it after swapping in a model. Teacher dev
scores go through eval's teacher-score cache, so eval's own dev pass reuses them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from reldistill.calibration import summary
from reldistill.config import DataConfig
from reldistill.recipe import load_recipe, override
from reldistill.run_layout import RunDir
from reldistill.settings import Runtime
from reldistill.student.calibrate import calibrate_student
from reldistill.teacher.calibrate import calibrate_teacher


def calibrate_run(run: RunDir, data_cfg: DataConfig, dtype: str = "auto", batch_size: int = 32,
                  force: bool = False, max_teacher_pairs: int | None = None, *,
                  runtime: Runtime | None = None) -> dict[str, Any]:
    """Calibrate every finished model of ``run`` (teacher, student, student-human) on ``data_cfg``'s dev split.

    A model already calibrated on this dev split is kept unless ``force``. Returns {model: summary + fitted_now}.
    ``runtime``: how the teacher and the students run (default the library's).
    """
    out: dict[str, Any] = {}
    if run.done("teacher"):
        from reldistill.eval.teacher_scores import TeacherScoreCache  # loads torch: `reldistill --help` must not wait for it

        cache = TeacherScoreCache(run.teacher, run.eval_cache, dtype, batch_size, runtime=runtime)
        cal, now = calibrate_teacher(run.teacher, data_cfg, scorer=lambda q, t: cache.scores(q, t, progress=True),
                                     max_pairs=max_teacher_pairs, force=force)
        out["teacher"] = {**summary(cal), "fitted_now": now}
    for stage in ("student", "student-human"):
        if run.done(stage):
            cal, now = calibrate_student(run.stage_dir(stage), data_cfg, force=force, runtime=runtime)
            out[stage] = {**summary(cal), "fitted_now": now}
    return out


def calibrate_cmd(
    run: Annotated[Path, typer.Option("--run", help="Run directory whose teacher and students to calibrate.")],
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (its data: and eval: sections).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Override the recipe's data.path (dev is carved from its train split).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Refit even where a calibration on this dev split exists.")] = False,
    max_teacher_pairs: Annotated[Optional[int], typer.Option(help="Score at most this many dev pairs with the teacher (whole queries).")] = None,
) -> None:
    """Fit P(Exact) and P(Exact or Substitute) for the run's teacher and students on the dev split (calibration.json)."""
    recipe = load_recipe(config)
    data_cfg = override(recipe.data, path=str(data) if data else None)
    res = calibrate_run(RunDir(run), data_cfg, recipe.eval.teacher_dtype, recipe.eval.teacher_batch, force, max_teacher_pairs,
                        runtime=Runtime.from_env(student=recipe.student))
    if not res:
        typer.echo(f"{run} has no finished teacher or student to calibrate.")
    for name, s in res.items():
        typer.echo(f"{name}: {'fitted' if s['fitted_now'] else 'kept'} on {s['dev'].get('pairs')} dev pairs of "
                   f"{s['dev'].get('queries')} queries — {json.dumps(s['methods'])}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_cmd)
