"""No library module reads the environment: reldistill.settings is the one reader (``Runtime.from_env``) and the one
writer (``pin_threads``, called at the CLI edge); everything else takes a ``Runtime``."""

from __future__ import annotations

import ast

from tests.core.test_layers import package_dirs

SETTINGS = "reldistill.settings"


def environment_uses(source: str) -> list[tuple[int, str]]:
    """(line, code) of every ``os.environ`` / ``os.getenv`` / ``environ.get`` / ``getenv`` use in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        hit = False
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb", "putenv", "unsetenv"):
            hit = True
        elif isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
            hit = True
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name in ("environ", "getenv", "putenv") for a in node.names):
            hit = True
        if hit:
            out.append((node.lineno, ast.unparse(node)))
    return out


def library_sources() -> dict[str, str]:
    out = {}
    for pkg, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            out[pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"] = path.read_text(encoding="utf-8")
    return out


def test_only_the_settings_module_touches_the_environment():
    bad = [f"{m}:{line} {code}" for m, src in library_sources().items() if m != SETTINGS
           for line, code in environment_uses(src)]
    assert bad == [], "read the setting from a Runtime (reldistill.settings) instead:\n" + "\n".join(bad)


def test_the_check_sees_each_form():
    src = "import os\nfrom os import environ\na = os.environ.get('X')\nb = os.getenv('Y')\nc = environ['Z']\n"
    assert sorted(line for line, _ in environment_uses(src)) == [2, 3, 4, 5]
    assert environment_uses("import os\nos.cpu_count()\n") == []
