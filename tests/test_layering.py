"""Layers that hold without tricks (docs/ARCHITECTURE.md): what may import what, read from the source."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "voxuda_cli"


def _imports(path: Path, package: str) -> set[str]:
    """Every voxuda_cli module a file imports, at module level, inside functions or under TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("voxuda_cli"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module if node.level == 0 else f"{package}.{node.module}"
            if module.startswith("voxuda_cli"):
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_training_loads_nothing_from_inference() -> None:
    code = (
        "import sys, pkgutil, importlib, voxuda_cli.training as t\n"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(t.__path__, 'voxuda_cli.training.')]\n"
        "print(sorted(m for m in sys.modules if m.startswith('voxuda_cli.inference')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    for path in (PACKAGE / "training").rglob("*.py"):
        assert not any(m.startswith("voxuda_cli.inference") for m in _imports(path, "voxuda_cli.training")), path


def test_no_two_inference_modules_import_each_other() -> None:
    modules = {p.stem: p for p in (PACKAGE / "inference").glob("*.py") if p.stem != "__init__"}
    graph = {
        name: {m.split(".")[2] for m in _imports(path, "voxuda_cli.inference") if m.startswith("voxuda_cli.inference.")}
        & set(modules)
        for name, path in modules.items()
    }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert cycles == [], f"import cycles through {cycles}"
