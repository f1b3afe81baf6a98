"""The package's import graph: no cycles (imports inside functions count) and the layering of the README.

Read from the source's AST, so nothing is imported and an import that only runs in a rare branch counts.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
RUNNERS = {"training", "prediction", "evaluation"}
# what each package may import of the package; README.md, "Folder map", states the same rule
BELOW = {
    "utils": set(),
    "optics": set(),
    "io": {"utils"},
    "data": {"utils", "io", "optics"},
    "metrics": {"utils", "io"},
    "models": {"utils", "io", "optics", "data"},
    "inference": {"utils", "io", "optics", "data", "models"},
    "stages": {"utils", "io", "optics", "data", "models", "metrics"},
    "callbacks": {"utils", "io", "optics", "data", "models", "metrics", "stages"},
    "training": {"utils", "io", "optics", "data", "models", "metrics", "stages", "callbacks"},
    "prediction": {"utils", "io", "optics", "data", "models", "metrics", "inference"},
    "evaluation": {"utils", "io", "optics", "data", "models", "metrics", "inference", "stages"},
}
WITHOUT_LIGHTNING = {"utils.atomic", "utils.threads", "utils.sampler", "optics", "io", "models", "inference", "metrics"}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under `root` (a folder holding packages)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the modules of `root` it imports, module -> the third-party top-level names it imports).

    `from a.b import c` counts as importing a.b.c when that is a module, else a.b; importing a.b.c also runs
    a/__init__ and a/b/__init__, which count as imported unless they hold the importing module.
    """
    modules = module_files(root)
    edges: dict[str, set[str]] = defaultdict(set)
    external: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] not in {key.split(".")[0] for key in modules}:
                    external[name].add(target.split(".")[0])
                    continue
                parts = target.split(".")
                for end in range(1, len(parts) + 1):
                    imported = ".".join(parts[:end])
                    inside = name == imported or name.startswith(imported + ".")
                    if imported in modules and not inside:
                        edges[name].add(imported)
    return edges, external


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(edges) | {other for targets in edges.values() for other in targets}):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in BELOW) else None


def test_the_package_has_no_import_cycles():
    edges, _ = import_graph(SRC)
    assert cycles(edges) == []


def test_every_package_imports_only_what_lies_below_it():
    edges, _ = import_graph(SRC)
    packages = {layer(name) for name in module_files(SRC)} - {None}
    assert packages == set(BELOW), "a package was added or removed: give it its place in BELOW and the README"
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in edges.items()
        for target in targets
        if layer(name) and layer(target) and layer(target) != layer(name) and layer(target) not in BELOW[layer(name)]
    )
    assert wrong == []


def test_models_inference_and_optics_know_nothing_of_lightning():
    _, external = import_graph(SRC)
    wrong = sorted(
        name
        for name, imported in external.items()
        if "lightning" in imported and any(name.startswith(f"any2bokeh.{part}") for part in WITHOUT_LIGHTNING)
    )
    assert wrong == []


@pytest.fixture
def tree(tmp_path):
    """A package `pkg` whose modules `a` and `b` import `c`; each test adds the import it needs."""

    def write(extra: dict[str, str]) -> Path:
        files = {"pkg/__init__.py": "", "pkg/a.py": "from pkg import c\n", "pkg/b.py": "import pkg.c\n", "pkg/c.py": ""}
        for name, text in {**files, **extra}.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        return tmp_path

    return write


def test_cycles_are_found_through_imports_inside_functions(tree):
    assert cycles(import_graph(tree({}))[0]) == []
    root = tree({"pkg/c.py": "def late():\n    from pkg.a import something\n"})
    assert cycles(import_graph(root)[0]) == [["pkg.a", "pkg.c"]]


def test_a_package_init_that_imports_its_importer_is_a_cycle(tree):
    # c imports pkg.sub.d, whose package __init__ imports c back
    root = tree(
        {"pkg/sub/__init__.py": "from ..c import x\n", "pkg/sub/d.py": "", "pkg/c.py": "from .sub.d import y\n"}
    )
    assert cycles(import_graph(root)[0]) == [["pkg.c", "pkg.sub"]]
