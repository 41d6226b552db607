"""The package's layout rules: layers import only downwards, no import cycles, no god-modules.

Layers, lowest first (docs/development.md):
  core utilities < models < recording/inference/explanation < zoo < api < analysis, viz, training < batch < cli
Every import counts, also those inside functions (they run too, only later).
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tpexplain"

LAYERS = {
    "io": 0, "keypoints": 0, "layout": 0, "transforms": 0, "decode": 0, "figures": 0, "progress": 0, "detect": 0,
    "models": 1,
    "record": 2, "inference": 2, "explanation": 2, "keypoint_attention": 2,
    "zoo": 3,
    "api": 4,
    "analysis": 5, "viz": 5, "training": 5,
    "batch": 6,
    "cli": 7, "__main__": 7,
}
MAX_LINES = 550


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """tpexplain modules imported anywhere in the file (resolving relative imports)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import submodule` depends on the submodule, not on the package's __init__
            subs = [f"{mod}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in known]
            if len(targets) < len(subs):
                targets.append(mod)
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t.startswith("tpexplain"):
                found.add(t)
    found.discard(name)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


MODULES = _modules()
GRAPH = {m: _imports(m, p, set(MODULES)) for m, p in MODULES.items()}


def test_every_folder_of_code_is_a_regular_package():
    # a folder without __init__.py is a namespace package: setuptools' find_packages leaves it out of the wheel
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    missing = sorted(str(f.relative_to(PACKAGE.parent)) for f in folders if not (f / "__init__.py").exists())
    assert not missing, f"folders of code without __init__.py: {missing}"


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if m != "tpexplain" and _layer(m) is None]
    assert not unplaced, f"modules outside the known layers: {unplaced}"


def test_no_module_imports_from_a_layer_above_it():
    upward = [(m, t) for m, targets in GRAPH.items() if m != "tpexplain" for t in targets
              if t != "tpexplain" and _layer(t) > _layer(m)]
    assert not upward, "imports from a higher layer: " + ", ".join(f"{m} -> {t}" for m, t in upward)


def test_no_import_cycles():
    graph = {m: ts for m, ts in GRAPH.items() if m != "tpexplain"}   # the root only re-exports, lazily
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small_and_says_what_it_is_for(module):
    path = MODULES[module]
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)} has {lines} lines"
    if source.strip():
        assert ast.get_docstring(ast.parse(source)), f"{path.relative_to(PACKAGE.parent)} has no docstring"


def test_import_tpexplain_is_cheap():
    import subprocess
    import sys
    code = ("import sys, tpexplain, tpexplain.cli; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'cv2', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
