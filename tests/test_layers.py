"""The dependency rule of the package, read from the imports themselves (no circle, no upward import).

    cli → run → report → judge → sample → provision → leaves (plan, units, errors, rundir, configfile, instrument)

A package may import its own modules and the layers to its right; the bundled demo service
may import only ``drainwatch.instrument``; the scenarios only each other. Only provision (to start the
demo) and the CLI (to serve it alone) reach into the demo service.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"drainwatch": REPO / "src" / "drainwatch"}
LAYERS = ["cli", "run", "report", "judge", "sample", "provision", "leaf"]


def modules() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            found[name] = path
    return found


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] == "drainwatch"}


def room(module: str) -> str:
    """The layer a drainwatch module lives in (``leaf`` for the top-level modules)."""
    parts = module.split(".")
    if parts[1:2] in (["scenarios"], ["demo_service"]):
        return parts[1]
    if parts[1:2] in (["__main__"], ["pytest_plugin"]):  # front ends, like the command line
        return "cli"
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "leaf"


def known(name: str, mods: dict[str, Path]) -> str | None:
    """The module an imported name refers to (``pkg.mod.symbol`` → ``pkg.mod``)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def test_the_tree_is_found() -> None:
    mods = modules()
    assert {
        "drainwatch.cli.boundary",
        "drainwatch.judge.verdict",
        "drainwatch.scenarios.chaos",
        "drainwatch.demo_service.app",
        "drainwatch.plan",
    } <= set(mods)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_only_rightwards(module: str) -> None:
    mods = modules()
    here = room(module)
    for name in imports(mods[module]):
        target = known(name, mods)
        assert target is not None, f"{module} imports {name}, which does not exist"
        there = room(target)
        if here == "demo_service":
            assert there == "demo_service" or target == "drainwatch.instrument", f"{module} imports {target}"
        elif here == "scenarios":
            assert there == "scenarios", f"{module} imports {target}"
        elif there == "demo_service":
            # provision reads the demo's facts to start it; the CLI's demo-service command serves it
            assert (here, target) in (
                ("provision", "drainwatch.demo_service"),
                ("cli", "drainwatch.demo_service.__main__"),
            ), f"{module} imports {target}"
        elif there == "scenarios":
            assert target == "drainwatch.scenarios" and here == "provision", f"{module} imports {target}"
        else:
            assert LAYERS.index(there) >= LAYERS.index(here), f"{module} ({here}) imports {target} ({there}): upward"


def test_no_import_circle() -> None:
    mods = modules()
    graph = {m: {known(n, mods) for n in imports(p)} - {None, m} for m, p in mods.items()}
    graph = {
        m: {t for t in targets if not mods[m].name == "__init__.py" or not t.startswith(m + ".")}
        for m, targets in graph.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, "import circle: " + " → ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


# What reads files, talks to a network or starts processes: none of it belongs in the judge.
IO_MODULES = {"csv", "httpx", "socket", "subprocess", "psycopg", "asyncpg", "pathlib", "shutil", "tempfile"}


def test_the_judge_opens_no_file_and_sends_no_request() -> None:
    judged = {name: path for name, path in modules().items() if name.startswith("drainwatch.judge")}
    assert "drainwatch.judge.verdict" in judged
    for name, path in judged.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                used = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                used = {node.module.split(".")[0]}
            else:
                used = set()
            assert not used & IO_MODULES, (
                f"{name} imports {used & IO_MODULES}: readers belong in drainwatch.run.evidence"
            )
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{name} calls open() at line {node.lineno}"
