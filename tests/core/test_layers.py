"""The layers of DESIGN.md hold: every import of the project's own modules, function-level ones included, goes down
the layer table (never up, never across peers); no module imports itself back through a cycle; a function-level
import of the project's own code exists only where the module it imports pulls a heavy third-party library that the
importing module does not load at its top level (so `reldistill --help` and light modules stay fast)."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]

LAYERS = {"core": 0, "index": 1, "student": 2, "teacher": 3, "distill": 4, "retrieval": 5, "eval": 6, "bench": 6,
          "workflow": 7}
# Third-party modules whose import costs a noticeable fraction of a second (or loads native libraries).
HEAVY = {"torch", "transformers", "sentence_transformers", "peft", "accelerate", "bitsandbytes", "faiss", "fastapi",
         "uvicorn", "starlette", "onnxruntime", "onnx", "onnxscript", "openvino", "bm25s", "ranx", "datasets",
         "matplotlib", "scipy", "pandas", "pyarrow", "gguf", "tokenizers", "selenium", "sklearn"}


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    in_function: bool
    export: bool = False  # a lazy package export (checked for direction only)


def package_dirs() -> dict[str, Path]:
    """Package name → folder, from pyproject's setuptools mapping (the folders sit at the top level)."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    out = {}
    for pkg in cfg["packages"]:
        parent = max((p for p in mapping if pkg == p or pkg.startswith(p + ".")), key=len)
        out[pkg] = REPO / mapping[parent] / pkg[len(parent):].lstrip(".").replace(".", "/")
    return out


def project_sources() -> dict[str, str]:
    """Dotted module name → source, for every module the wheel ships."""
    out: dict[str, str] = {}
    for pkg, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            name = pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"
            out[name] = path.read_text(encoding="utf-8")
    return out


def layer_of(module: str) -> str:
    part = module.split(".")[1] if module.count(".") else ""
    return part if part in LAYERS and part != "core" else "core"


def _target(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, source: str, known: set[str],
               exports: dict[str, dict[str, str]] | None = None) -> tuple[list[Edge], set[str]]:
    """The project edges of one module (``from pkg import submodule`` resolves to the submodule, ``from pkg import
    Name`` to the home module of a lazy package export, which is what runs) and the top-level names of the
    third-party modules it imports at module level."""
    exports = exports or {}
    tree = ast.parse(source)
    in_fn = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    typing_only = {id(n) for f in ast.walk(tree) if isinstance(f, ast.If) and "TYPE_CHECKING" in ast.unparse(f.test)
                   for stmt in f.body for n in ast.walk(stmt)}  # annotations only: nothing is imported at run time
    edges, third = [], set()
    for node in tree.body:  # lazy package exports (reldistill.exports): a name → home-module map is a deferred import
        if isinstance(node, ast.Assign) and any(getattr(x, "id", "") == "_EXPORTS" for x in node.targets):
            edges += [Edge(module, c.value, node.lineno, True, True) for c in ast.walk(node.value)
                      if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value in known]
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _target(module, node, module + ".__init__" in known or _is_package(module, known))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else exports.get(base, {}).get(a.name, base)
                     for a in node.names]
        for name in names:
            if name.split(".")[0] == "reldistill":
                dst = name
                while dst not in known and "." in dst:
                    dst = dst.rsplit(".", 1)[0]
                edges.append(Edge(module, dst, node.lineno, id(node) in in_fn))
            elif id(node) not in in_fn and id(node) not in typing_only and name:
                third.add(name.split(".")[0])
    return edges, third


def _is_package(module: str, known: set[str]) -> bool:
    return any(k.startswith(module + ".") for k in known)


def export_maps(sources: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per package: its lazy ``_EXPORTS`` map (public name → home module), read from the source."""
    maps = {}
    for module, source in sources.items():
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and any(getattr(x, "id", "") == "_EXPORTS" for x in node.targets):
                try:
                    maps[module] = dict(ast.literal_eval(node.value))
                except ValueError:  # a comprehension {name: home for name in (...)}, or one unpacked into a dict
                    maps[module] = _literal_entries(node.value)
    return maps


def _literal_entries(node: ast.expr) -> dict[str, str]:
    """The literal name → home pairs of an ``_EXPORTS`` value; names computed at run time are left out."""
    if isinstance(node, ast.DictComp):
        try:
            return {n: ast.literal_eval(node.value) for n in ast.literal_eval(node.generators[0].iter)}
        except ValueError:
            return {}
    out = {}
    for k, v in zip(node.keys, node.values) if isinstance(node, ast.Dict) else ():
        out.update(_literal_entries(v) if k is None else {ast.literal_eval(k): ast.literal_eval(v)})
    return out


def graph(sources: dict[str, str]) -> tuple[list[Edge], dict[str, set[str]]]:
    known = set(sources)
    exports = export_maps(sources)
    edges, third = [], {}
    for module, source in sources.items():
        e, t = imports_of(module, source, known, exports)
        edges += e
        third[module] = t
    return edges, third


def upward(edges: list[Edge]) -> list[str]:
    bad = []
    for e in edges:
        a, b = layer_of(e.src), layer_of(e.dst)
        if LAYERS[b] > LAYERS[a] or (LAYERS[b] == LAYERS[a] and a != b):
            bad.append(f"{e.src}:{e.line} imports {e.dst} ({a} → {b})")
    return bad


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every edge."""
    succ: dict[str, set[str]] = {}
    for e in edges:
        if e.src != e.dst:
            succ.setdefault(e.src, set()).add(e.dst)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(succ.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return out


def heavy_closure(edges: list[Edge], third: dict[str, set[str]]) -> dict[str, set[str]]:
    """Per module: the heavy third-party modules that importing it loads (its top-level project imports followed)."""
    succ: dict[str, set[str]] = {}
    for e in edges:
        if not e.in_function:
            succ.setdefault(e.src, set()).add(e.dst)
    memo: dict[str, set[str]] = {}

    def heavy(m: str, seen: frozenset = frozenset()) -> set[str]:
        if m in memo:
            return memo[m]
        got = third.get(m, set()) & HEAVY
        for d in succ.get(m, ()):
            if d not in seen:
                got = got | heavy(d, seen | {m})
        if not seen:
            memo[m] = got
        return got

    return {m: heavy(m) for m in third}


def unjustified_lazy(edges: list[Edge], third: dict[str, set[str]]) -> list[str]:
    """Function-level project imports that no heavy third-party import explains."""
    heavy = heavy_closure(edges, third)
    return [f"{e.src}:{e.line} imports {e.dst} inside a function, but {e.dst} loads nothing heavy that "
            f"{e.src} does not already load" for e in edges
            if e.in_function and not e.export and not (heavy.get(e.dst, set()) - heavy.get(e.src, set()))]


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return project_sources()


def test_imports_go_down_the_layer_table(sources):
    edges, _ = graph(sources)
    assert len(edges) > 100 and {layer_of(m) for m in sources} == set(LAYERS)
    assert upward(edges) == []


def test_no_import_cycles(sources):
    edges, _ = graph(sources)
    assert cycles(edges) == []


def test_function_level_imports_only_defer_heavy_libraries(sources):
    edges, third = graph(sources)
    assert unjustified_lazy(edges, third) == []


def test_the_checks_catch_a_deliberate_upward_import_a_cycle_and_a_needless_lazy_import(sources):
    """The same walker, fed the real sources plus one bad edit each, reports it (a check that cannot fail is none)."""
    up = dict(sources)
    up["reldistill.student.encode"] += "\n\ndef _probe():\n    from reldistill.retrieval.pipeline import SearchPipeline\n"
    assert any(v.startswith("reldistill.student.encode:") and "student → retrieval" in v for v in upward(graph(up)[0]))
    exp = dict(sources)
    exp["reldistill.index"] += '\n_EXPORTS = {"SearchPipeline": "reldistill.retrieval.pipeline"}\n'
    assert any(v.startswith("reldistill.index:") and "index → retrieval" in v for v in upward(graph(exp)[0]))
    cyc = dict(sources)
    cyc["reldistill.artifacts"] += "\nfrom reldistill.run_layout import RunDir\n"
    cyc["reldistill.run_layout"] += "\nfrom reldistill.artifacts import write_json\n"
    assert ["reldistill.artifacts", "reldistill.run_layout"] in cycles(graph(cyc)[0])
    lazy = dict(sources)
    lazy["reldistill.index.fusion"] += "\n\ndef _probe():\n    from reldistill.errors import UserError\n"
    assert any(v.startswith("reldistill.index.fusion:") for v in unjustified_lazy(*graph(lazy)))


def deferred(edges: list[Edge], third: dict[str, set[str]]) -> list[str]:
    """The justified function-level project imports, one line per importing module: what it defers and why."""
    heavy = heavy_closure(edges, third)
    rows: dict[str, set[str]] = {}
    libs: dict[str, set[str]] = {}
    for e in edges:
        if e.in_function and not e.export and heavy.get(e.dst, set()) - heavy.get(e.src, set()):
            rows.setdefault(e.src, set()).add(e.dst)
            libs.setdefault(e.src, set()).update(heavy[e.dst] - heavy.get(e.src, set()))
    return [f"{m}: {', '.join(sorted(rows[m]))} (defers {', '.join(sorted(libs[m]))})" for m in sorted(rows)]


DOC = REPO / "docs" / "architecture.md"
START, END = "<!-- deferred-imports:start -->", "<!-- deferred-imports:end -->"


def deferred_block(edges: list[Edge], third: dict[str, set[str]]) -> str:
    return "\n".join([START, "```text", *deferred(edges, third), "```", END])


def test_the_architecture_page_lists_the_deferred_imports(sources):
    text = DOC.read_text(encoding="utf-8")
    block = text[text.index(START): text.index(END) + len(END)]
    assert block == deferred_block(*graph(sources)), "run: python -m tests.core.test_layers --deferred"


def write_deferred() -> None:
    text = DOC.read_text(encoding="utf-8")
    new = text[: text.index(START)] + deferred_block(*graph(project_sources())) + text[text.index(END) + len(END):]
    DOC.write_text(new, encoding="utf-8")


if __name__ == "__main__":  # python -m tests.core.test_layers [--deferred | PACKAGE...]
    if sys.argv[1:] == ["--deferred"]:
        write_deferred()
        raise SystemExit(0)
    want = sys.argv[1:]
    edges_, third_ = graph(project_sources())
    found = upward(edges_) + [" ↔ ".join(c) for c in cycles(edges_)] + unjustified_lazy(edges_, third_)
    print("\n".join(v for v in found if not want or any(layer_of(v.split(":")[0].split(" ")[0]) == w for w in want)))
