"""The import graph of the library flows one way: no circle, no function-local import of the
package's own modules, and every module imports only from its own layer or the layers below it."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "sdmad_lite"

#: lowest first; a module may import from its own layer and the ones before it
LAYERS = [
    ["version", "settings", "io", "seeding"],
    ["profiles", "validation"],
    ["config"],
    ["data"],
    ["features"],
    ["models"],
    ["signs"],
    ["losses", "selection", "metrics"],
    ["protocols"],
    ["task", "train", "tuning"],
    ["methods"],
    ["run", "sweep", "reports", "info", "studies"],
    ["explore"],
    ["cli", "data_scripts", "__init__"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module of the package, at module level?, line) for every import of ``path``."""
    tree = ast.parse(path.read_text())
    me = module_name(path).split(".")
    pkg = me if path.name == "__init__.py" else me[:-1]
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):  # imports inside `if TYPE_CHECKING` / try at module level count as top level
        if isinstance(node, (ast.If, ast.Try)) and id(node) in top_level:
            top_level |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            for n in names:
                if n.startswith("sdmad_lite"):
                    out.append((n, id(node) in top_level, node.lineno))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("sdmad_lite"):
                    out.append((a.name, id(node) in top_level, node.lineno))
    return out


def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    if key not in LAYER:
        raise AssertionError(f"{module}: not in a layer of tests/test_architecture.py (add it)")
    return LAYER[key]


FILES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_function_local_import_of_the_package():
    local = [f"{p.relative_to(PKG.parent)}:{line} imports {m}" for p in FILES for m, top, line in imports(p) if not top]
    assert not local, "\n".join(local)


def test_every_import_goes_down_the_layers():
    up = []
    for p in FILES:
        me = module_name(p)
        for m, _, line in imports(p):
            if m == "sdmad_lite" and me.startswith("sdmad_lite."):
                up.append(f"{me}:{line} imports the package root")
            elif m != "sdmad_lite" and layer_of(m) > layer_of(me):
                up.append(f"{me}:{line} imports {m} from a higher layer")
    assert not up, "\n".join(up)


def test_the_import_graph_has_no_circle():
    graph: dict[str, set[str]] = {}
    mods = {module_name(p) for p in FILES}
    for p in FILES:
        me = module_name(p)
        deps = set()
        for m, _, _ in imports(p):
            while m not in mods and "." in m:  # `from .x import name` where name is not a module
                m = m.rsplit(".", 1)[0]
            if m != me and not me.startswith(m + "."):  # a package's own __init__ is not a dependency of its parts
                deps.add(m)
        graph[me] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in graph.get(n, ()):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


#: drawing code of one modality each (one concept, long because anatomy is long)
LONG_ON_PURPOSE = {"data/phantoms/chest.py"}


def test_modules_stay_small():
    big = [f"{p.relative_to(PKG)} ({n} lines)" for p in FILES
           if (n := len(p.read_text().splitlines())) > 420 and str(p.relative_to(PKG)) not in LONG_ON_PURPOSE]
    assert not big, "split these modules by concept: " + ", ".join(big)


def test_version_agrees_with_pyproject():
    import re

    from sdmad_lite.version import __version__

    text = (PKG.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == __version__
