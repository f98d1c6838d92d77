"""The code stays readable as it grows: short functions, modules that say what they hold, no process-global settings.

Walks every module the wheel ships (the same folder mapping as the layer test)."""

from __future__ import annotations

import ast

import pytest

from tests.core.test_layers import project_sources

MAX_LINES = 80
MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque"}


def long_functions(sources: dict[str, str], limit: int = MAX_LINES) -> list[str]:
    """Every function or method (nested ones included) longer than ``limit`` lines, decorators left out."""
    out = []
    for module, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{module}:{node.lineno} {node.name} has {lines} lines")
    return out


def _mutable(value: ast.expr) -> bool:
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    return isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", None)) in MUTABLE_CALLS


def global_state(sources: dict[str, str]) -> list[str]:
    """Module-level mutable containers under a lower-case (i.e. not constant) name, and every ``global`` statement."""
    out = []
    for module, source in sources.items():
        tree = ast.parse(source)
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            value = getattr(node, "value", None)
            for t in targets:
                name = getattr(t, "id", "")
                if value is not None and _mutable(value) and name and not name.isupper() and name != "__all__":
                    out.append(f"{module}:{node.lineno} module-level mutable {name}")
        out += [f"{module}:{n.lineno} global {', '.join(n.names)}" for n in ast.walk(tree) if isinstance(n, ast.Global)]
    return out


def private_imports(sources: dict[str, str]) -> list[str]:
    """``from reldistill.x import _name``: a module reaching into another's private names."""
    return [f"{module}:{node.lineno} imports {a.name} from {node.module}" for module, source in sources.items()
            for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reldistill")
            for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return project_sources()


def test_no_function_over_80_lines(sources):
    assert long_functions(sources) == []


def test_every_module_says_what_it_holds(sources):
    assert [m for m, s in sources.items() if not ast.get_docstring(ast.parse(s))] == []


def test_no_module_level_mutable_state(sources):
    assert global_state(sources) == []


def test_no_private_names_imported_across_modules(sources):
    assert private_imports(sources) == []


def test_the_shape_checks_can_fail(sources):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    bad = {"reldistill.probe": f'"""probe"""\n\ndef f():\n{body}\n\n_cache = {{}}\n\ndef g():\n    global _cache\n'}
    assert private_imports({"reldistill.probe": "from reldistill.index.dense import _x"}) == [
        "reldistill.probe:1 imports _x from reldistill.index.dense"]
    assert long_functions(bad) == ["reldistill.probe:3 f has 81 lines"]
    assert global_state(bad) == ["reldistill.probe:85 module-level mutable _cache", "reldistill.probe:88 global _cache"]
