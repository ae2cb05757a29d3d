"""The structure a newcomer follows: `spark/` imports no Dagster, no package imports in a
circle (function-local imports included: a circle hidden inside a function is still one), and
the Dagster layer uses Dagster's public API only."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("fruits_assets", "spark", "bootstrap", "bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project's modules that `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_modules_import_each_other_in_a_circle() -> None:
    known = modules()
    graph = {
        # A package's __init__ importing its own modules is not a circle of the design.
        name: {m for m in imports_of(path, set(known)) if not m.startswith(f"{name}.")}
        for name, path in known.items()
    }
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("path", sorted((REPO / "spark").rglob("*.py")), ids=lambda p: p.name)
def test_the_spark_library_imports_no_dagster(path: Path) -> None:
    assert not [m for m in imports_of(path, {"dagster", "dagster_aws", "dagster_pyspark"})]


@pytest.mark.parametrize(
    "path", sorted((REPO / "fruits_assets").rglob("*.py")), ids=lambda p: p.stem
)
def test_the_dagster_layer_uses_dagsters_public_api(path: Path) -> None:
    private = [
        line.strip()
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("from dagster._", "import dagster._"))
    ]
    assert private == []
