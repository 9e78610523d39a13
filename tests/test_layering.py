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


# ---- the whole package's import graph (docs/ARCHITECTURE.md "Layers") -----------------------------

STAGES = {"simulate", "extract", "filters", "training", "inference"}
# the one stage other stages use, through these public modules (the denoisers, the NGM, the spectral view)
SHARED_STAGE_MODULES = {"voxuda_cli.filters", "voxuda_cli.filters.denoisers", "voxuda_cli.filters.noise",
                        "voxuda_cli.filters.spectral"}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_imports(path: Path, name: str, with_type_checking: bool) -> set[str]:
    """The voxuda_cli modules a file imports (inside functions too), resolved to modules."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    skipped = set()
    if not with_type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(sub) for sub in ast.walk(node))
    named = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            named.add(module)
            named.update(f"{module}.{alias.name}" for alias in node.names)
    resolved = set()
    for full in named:
        parts = full.split(".")
        while parts and ".".join(parts) not in MODULES:
            parts.pop()
        if parts and parts[0] == "voxuda_cli":
            resolved.add(".".join(parts))
    return resolved - {name}


def _layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else ""
    return "cli" if part in ("cli", "__main__") else "stage" if part in STAGES else "shared"


def test_no_upward_import_and_no_stage_uses_another_stages_internals() -> None:
    wrong = []
    for name, path in MODULES.items():
        for target in _runtime_imports(path, name, with_type_checking=True):
            source_layer, target_layer = _layer(name), _layer(target)
            same_stage = name.split(".")[1:2] == target.split(".")[1:2]
            if target_layer == "cli" and source_layer != "cli":
                wrong.append(f"{name} -> {target} (the library imports the CLI)")
            elif source_layer == "shared" and target_layer == "stage":
                wrong.append(f"{name} -> {target} (a shared module imports a stage)")
            elif source_layer == "stage" and target_layer == "stage" and not same_stage:
                if target not in SHARED_STAGE_MODULES:
                    wrong.append(f"{name} -> {target} (a stage imports another stage's internals)")
    assert wrong == [], "\n".join(sorted(wrong))


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """Imports inside functions count (a cycle hidden there is still a cycle); a package importing its
    own submodules to register them (training/methods/, filters/denoisers/) does not."""
    graph = {}
    for name, path in MODULES.items():
        imports = _runtime_imports(path, name, with_type_checking=False)
        registers = path.name == "__init__.py"
        graph[name] = {m for m in imports if not (registers and m.startswith(name + "."))}
    cycles = set()
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for successor in graph[node]:
                if successor == start:
                    cycles.add(" -> ".join(sorted(set(trail))))
                elif successor not in seen:
                    seen.add(successor)
                    stack.append((successor, [*trail, successor]))
    assert cycles == set(), "\n".join(sorted(cycles))


def test_every_type_ignore_says_why() -> None:
    """`make lint` runs mypy; what it is told to ignore carries its reason on the same line."""
    import re

    bare = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"# type: ignore(\[[^\]]*\])?\s*$", line)
    ]
    assert bare == [], bare
