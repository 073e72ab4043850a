"""Imports point one way: core <- model <- parallel <- engine <- tasks/run.

Every `import` and `from ... import` in bltx is read from the source (function-level ones
included, and `import_module("literal")`), so a lazy import inside a function cannot hide a
wrong-way arrow. A module may import its own layer and the layers below it.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "bltx"

CORE = {"registry", "schema", "config", "bytes", "errors", "protocols", "device", "precision",
        "sections", "checkpoint", "bundled", "checks", "paths"}
LAYERS = [
    ("core", CORE | {""}),  # "" is bltx/__init__.py: load_recipe, build, register
    ("model", {"model", "patching"}),
    ("parallel", {"parallel"}),
    ("engine", {"data", "train", "infer", "eval", "interop"}),
    ("top", {"tasks", "run", "dry_run", "__main__", "testing"}),
]
RANK = {room: i for i, (_, rooms) in enumerate(LAYERS) for room in rooms}
# The generation work keeps its cache protocol beside the model (bltx/model/cache.py);
# protocols.py re-exports it so a plugin author still reads one file.
# `bltx.load(path)` is the package's front door to saved models (issue 22): a lazy
# re-export, inside the function, of the engine's loader; nothing in core calls it.
ALLOWED = {("bltx.protocols", "bltx.model.cache"), ("bltx", "bltx.train.pretrained"), ("bltx", "bltx.train.text")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path):
    """(imported bltx module, line) for every import in the file, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            # `from bltx import model` (a package) and `from bltx.checkpoint import manifest`
            # (a file) name a module; `from bltx.config import load_recipe` names its module.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                path = ROOT.parent / sub.replace(".", "/")
                yield (sub if path.is_dir() or path.with_suffix(".py").is_file() else base), node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                yield node.args[0].value, node.lineno


def wrong_way() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        src = module_name(path)
        for target, line in imports(path):
            if not target.startswith("bltx") or (src, target) in ALLOWED:
                continue
            a, b = room(src), room(target)
            if a not in RANK or b not in RANK:
                bad.append(f"{src}:{line} -> {target} (a room no layer names)")
            elif RANK[b] > RANK[a]:
                bad.append(f"{src}:{line} -> {target} ({LAYERS[RANK[a]][0]} imports {LAYERS[RANK[b]][0]})")
    return bad


def test_imports_point_one_way():
    assert wrong_way() == []


def test_model_and_patching_import_nothing_above_them():
    above = {"train", "eval", "infer", "data", "parallel", "tasks", "interop", "run", "dry_run"}
    for folder in ("model", "patching"):
        for path in (ROOT / folder).rglob("*.py"):
            hits = [t for t, _ in imports(path) if t.startswith("bltx.") and room(t) in above]
            assert hits == [], f"{path.relative_to(ROOT)} imports {hits}"


def test_from_package_import_module_names_the_module_file():
    # bltx/checkpoint/weights.py: `from bltx.checkpoint import manifest` is an arrow to
    # bltx/checkpoint/manifest.py, not to the package's __init__ (which would be a cycle).
    found = {t for t, _ in imports(ROOT / "checkpoint" / "weights.py")}
    assert "bltx.checkpoint.manifest" in found and "bltx.checkpoint" not in found


def test_the_check_sees_function_level_imports():
    # bltx/dry_run.py imports the memory estimate inside print_dry_run, not at the top.
    assert "bltx.parallel.memory" in {t for t, _ in imports(ROOT / "dry_run.py")}


def import_cycles() -> list[list[str]]:
    """Cycles in the module graph of bltx (function-level imports included). A package's
    __init__ importing its own submodules is not a cycle back into it unless a submodule
    imports the package's __init__ names, which the graph then shows."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {m: sorted({t for t, _ in imports(p) if t in modules and t != m}) for m, p in modules.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    # A package __init__ re-exporting a submodule that imports a sibling through the
    # package is still a cycle; only `bltx` (the top-level convenience API) is exempt, since
    # every module's `import bltx.x` runs it first by Python's rules, not by choice.
    return [c for c in cycles if "bltx" not in c]


def test_no_import_cycles():
    assert import_cycles() == []


def forward_attribute_writes() -> list[str]:
    """`self.NAME = ...` (or augmented) inside any method named forward or forward_*."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and (node.name == "forward" or node.name.startswith("forward_")):
                for sub in ast.walk(node):
                    targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target] if isinstance(sub, (ast.AugAssign, ast.AnnAssign)) else []
                    for t in targets:
                        for leaf in ast.walk(t):
                            if isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) and leaf.value.id == "self":
                                found.append(f"{path.relative_to(ROOT)}:{sub.lineno} {node.name} writes self.{leaf.attr}")
    return found


def test_no_forward_writes_module_attributes():
    """What a forward produces is returned (bltx/model/output.py ModelOutput), never left on
    the module, which torch.compile and activation checkpointing do not see."""
    assert forward_attribute_writes() == []
