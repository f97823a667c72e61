"""The import graph of the library flows one way: no circle, no function-local import of the
package's own modules, and every module imports only from its own layer or the layers below it."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "sdmad_lite"

#: lowest first; a module may import from its own layer and the ones before it
LAYERS = [
    ["version", "errors"],
    ["settings", "io", "seeding", "processes"],
    ["config"],
    ["data"],
    ["features"],
    ["models"],
    ["signs"],
    ["losses", "selection", "metrics"],
    ["protocols"],
    ["task", "train"],
    ["tuning", "cache"],
    ["methods"],
    ["evaluation"],
    ["run"],
    ["executor", "results", "analysis", "plots", "signspace", "phantom_checks"],
    ["sweep", "reports", "info", "studies"],
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


#: the deferred imports: the package root's ``print_config`` (PEP 562 ``__getattr__``) loads the backbone
#: code only when called, so that a process that imports the package to render phantoms starts without torch
DEFERRED = {("sdmad_lite/__init__.py", "sdmad_lite.info"),
            # and the ``sdmad`` command's body: a worker the command spawns re-runs the imports of its script
            ("sdmad_lite/cli/__init__.py", "sdmad_lite.cli.commands")}


def test_no_function_local_import_of_the_package():
    local = [f"{p.relative_to(PKG.parent)}:{line} imports {m}" for p in FILES for m, top, line in imports(p)
             if not top and (str(p.relative_to(PKG.parent)), m) not in DEFERRED]
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


#: the phantom renderers: drawing code of one modality each (one concept, long because anatomy is long)
RENDERERS = {"data/phantoms/chest.py", "data/phantoms/brain.py", "data/phantoms/oct.py"}


def test_modules_stay_small():
    big = [f"{p.relative_to(PKG)} ({n} lines)" for p in FILES
           if (n := len(p.read_text().splitlines())) > 300 and str(p.relative_to(PKG)) not in RENDERERS]
    assert not big, "split these modules by concept (at most 300 lines outside the phantom renderers): " + ", ".join(big)


def _calls(path: Path, names: set[str]) -> list[str]:
    """``file:line name`` of every call of a function or attribute named in ``names``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else None)
            if name in names:
                out.append(f"{path.relative_to(PKG)}:{node.lineno} {name}")
    return out


def test_task_holds_nothing_of_a_method():
    """The task is what every method reads; SD-MAD's head is built in methods/ (heads.py)."""
    text = (PKG / "task.py").read_text()
    assert not [m for m, _, _ in imports(PKG / "task.py") if m.startswith(("sdmad_lite.methods", "sdmad_lite.models.sdmad.SDMADHead"))]
    for word in ("SDMADHead", "make_head", "adapter_hidden", "adapter_lambda", "LOSS_TERMS"):
        assert word not in text, f"task.py mentions {word}: method-specific code belongs in methods/"


def test_one_cross_validation_scaffold():
    """Every trained method fits through tuning.fit_tuned: no module of methods/ draws folds, builds the
    fold masks or chooses a grid point itself."""
    scaffold = {"assign_folds", "choose_from_stack", "choose_from_folds", "grid_points", "apply_point"}
    found = [c for p in sorted((PKG / "methods").glob("*.py")) for c in _calls(p, scaffold)]
    # apply_point: only to set the side placement for SD-MAD's stack, and in probe's per-fold fits
    allowed = {"methods/sdmad.py apply_point", "methods/probe.py apply_point"}
    assert not [c for c in found if " ".join([c.split(":")[0], c.split()[-1]]) not in allowed], found
    for p in sorted((PKG / "methods").glob("*.py")):
        assert "% tc.folds" not in p.read_text() and "in_val" not in p.read_text(), f"{p.name} builds fold masks"
    fitted_by = {p.name for p in (PKG / "methods").glob("*.py") if "fit_tuned(" in p.read_text()}
    assert {"sdmad.py", "probe.py", "coop.py", "mvfa.py", "anomalyclip.py"} <= fitted_by


def test_the_fitted_contract_is_declared_not_probed():
    """What a fitted method exposes is tuning.Fitted; the code that reads it never probes with getattr/hasattr."""
    probes = []
    for path in (PKG / "methods" / "__init__.py", PKG / "run.py", PKG / "evaluation.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                    and node.args and isinstance(node.args[0], ast.Name) and "fit" in node.args[0].id:
                probes.append(f"{path.name}:{node.lineno}")
    assert not probes, probes
    import typing

    from sdmad_lite import methods
    from sdmad_lite.tuning import Fitted

    for name, fit in methods.FAMILIES.items():
        ret = typing.get_type_hints(fit).get("return")
        assert isinstance(ret, type) and issubclass(ret, Fitted), f"{name}: its fit() must return a tuning.Fitted"


def test_version_agrees_with_pyproject():
    import re

    from sdmad_lite.version import __version__

    text = (PKG.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', text, re.M).group(1) == __version__
