"""The recipe: every section of a recipe YAML as one dataclass, read and validated once.

``load_recipe(path) -> Recipe`` checks the whole file up front: an unknown section or key, a wrong type
or an out-of-range value is one ``UserError`` naming the file and the setting. Stages take the section
objects (``recipe.distill``, ``recipe.index`` ...); each default is written once, as the field default,
and the CLI options that mirror a field take their help from its metadata (``option_help``).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from reldistill.config import DataConfig, from_dict
from reldistill.errors import UserError
from reldistill.recipe.demo import DemoConfig
from reldistill.recipe.distill import DistillConfig
from reldistill.recipe.eval import BenchConfig, EvalConfig
from reldistill.recipe.retrieval import IndexConfig, SearchConfig, ServeConfig
from reldistill.recipe.student import StudentConfig
from reldistill.recipe.teacher import ScoreConfig, TeacherConfig, TrainConfig

T = TypeVar("T")

# settings that moved to another section: {section: {old key: where it lives now}}
MOVED = {"eval": {"rrf_k": "search.rrf_k", "rerank_k": "search.rerank_k"}}


@dataclasses.dataclass
class Recipe:
    """Every section of a recipe; a section the file leaves out holds its defaults (an optional one, None)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    score: ScoreConfig = dataclasses.field(default_factory=ScoreConfig)
    student: StudentConfig = dataclasses.field(default_factory=StudentConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    index: IndexConfig = dataclasses.field(default_factory=IndexConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    serve: ServeConfig = dataclasses.field(default_factory=ServeConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    bench: BenchConfig = dataclasses.field(default_factory=BenchConfig)
    demo: DemoConfig | None = None  # optional: with it `reldistill demo` sizes its CPU stages from measured speed
    path: Path | None = dataclasses.field(default=None, compare=False)  # the file it was read from (None: defaults)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """{section: {key: value}} — what ``load_recipe`` reads back to an equal Recipe (optional sections when set)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS if getattr(self, name) is not None}


SECTIONS = tuple(f.name for f in dataclasses.fields(Recipe) if f.name != "path")
OPTIONAL = tuple(f.name for f in dataclasses.fields(Recipe) if f.name != "path" and f.default is None)  # None unless given
SECTION_CLASSES = {name: typing.get_args(tp)[0] if name in OPTIONAL else tp  # section name -> its dataclass
                   for name, tp in typing.get_type_hints(Recipe).items() if name in SECTIONS}
SECTION_OF = {cls: name for name, cls in SECTION_CLASSES.items()}  # class -> section name


def _read_sections(p: Path) -> dict[str, dict[str, Any]]:
    """The YAML mapping of sections; a missing or malformed file, an unknown or non-mapping section is a UserError."""
    if not p.is_file():
        raise UserError(f"config file {p} does not exist — pass an existing YAML file (see configs/).")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"config file {p} is not valid YAML ({type(e).__name__}) — fix its syntax.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of sections, not a {type(data).__name__}.")
    for name, section in data.items():
        if name not in SECTIONS:
            close = difflib.get_close_matches(str(name), SECTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"config file {p} has unknown section {name!r}{hint}; known sections: {', '.join(SECTIONS)}.")
        if section is None:
            raise UserError(f"config file {p}: section {name!r} is empty — give it settings, or remove it to use the defaults.")
        if not isinstance(section, dict):
            raise UserError(f"config file {p}: section {name!r} must be a mapping of settings, not {section!r}.")
        for key, where in MOVED.get(name, {}).items():
            if key in section:
                raise UserError(f"config file {p}: {name}.{key} is gone — eval, search and serve share one setting, {where}; move it there.")
    return data


def load_recipe(path: str | Path | None) -> Recipe:
    """Every section of the recipe at ``path``, validated (the defaults when ``path`` is None)."""
    if path is None:
        return Recipe()
    p = Path(path)
    raw = _read_sections(p)
    sections = {}
    for name in SECTIONS:
        if name in OPTIONAL and name not in raw:
            sections[name] = None
            continue
        try:
            sections[name] = from_dict(SECTION_CLASSES[name], raw.get(name), f"{p}: {name}")
        except UserError as e:  # a range check names the setting; say which file holds it
            raise e if str(p) in str(e) else UserError(f"config file {p}: {e}") from None
    teacher = sections["teacher"]
    if teacher.model_config and not Path(teacher.model_config).is_absolute():
        # relative to the repo root (cwd) first, then to the recipe file
        cand = Path(teacher.model_config)
        if not cand.exists() and (p.parent / cand).exists():
            teacher.model_config = str(p.parent / cand)
    return Recipe(**sections, path=p)


def override(cfg: T, **values: Any) -> T:
    """``cfg`` with the values that are not None replaced (CLI options over the recipe), validated again."""
    given = {k: v for k, v in values.items() if v is not None}
    return dataclasses.replace(cfg, **given) if given else cfg  # type: ignore[type-var]


def option_help(cls: type, name: str) -> str:
    """The help of a CLI option that mirrors recipe field ``cls.name``: its metadata help + where the default lives."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
    shown = "none" if default is None else ",".join(map(str, default)) if isinstance(default, list) else default
    return f"{field.metadata['help'].rstrip('.')} (default: the recipe's {SECTION_OF[cls]}.{name}, else {shown})."
