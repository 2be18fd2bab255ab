"""The addon's modules import one another without a cycle (every import
counted, those inside functions too), and the process's state, the
Registry hooks and the scanner of cached methods each have their module."""

from __future__ import annotations

import ast
from pathlib import Path

ADDON_PATH = Path(__file__).parent.parent / "odoo_addon" / "ormcache_redis"
PACKAGE = "ormcache_redis"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ADDON_PATH).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The addon's modules that ``path`` imports (relative imports and
    ``odoo.addons.ormcache_redis``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("odoo.addons." + PACKAGE):
                target = node.module.removeprefix("odoo.addons.")
            else:
                continue
            # ``from . import runtime`` imports the module runtime; ``from
            # .runtime import client`` the module runtime itself.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in modules else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("odoo.addons." + PACKAGE):
                    found.add(alias.name.removeprefix("odoo.addons."))
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(ADDON_PATH.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    return {_module_name(path): _imports(path, modules) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state:
                cycle = visit(imported)
                if cycle:
                    return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_the_addons_imports():
    graph = import_graph()
    assert "ormcache_redis.runtime" in graph["ormcache_redis.registry_hooks"]
    assert "ormcache_redis.cached_methods" in graph["ormcache_redis.native_lookup"]
    assert "ormcache_redis.runtime" in graph["ormcache_redis.wizards.ormcache_redis_stats"]


def test_no_import_cycle_among_the_addons_modules():
    assert find_cycle(import_graph()) is None


def test_a_cycle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_the_state_is_read_from_runtime_and_the_walk_from_cached_methods():
    graph = import_graph()
    assert "ormcache_redis.registry_patch" not in graph
    # The state imports no module that reads it.
    assert graph["ormcache_redis.runtime"] <= {
        "ormcache_redis.odoo_version",
        "ormcache_redis.database_secrets",
    }
    assert graph["ormcache_redis.cached_methods"] == set()
    for module in ("dependencies", "method_clear", "stats_signal", "metrics_publishing"):
        assert "ormcache_redis.registry_hooks" not in graph[f"ormcache_redis.{module}"]
    # One "is this an ormcache method" test: nobody else reads ``__cache__``
    # to decide it.
    for path in ADDON_PATH.glob("*.py"):
        if path.name != "cached_methods.py":
            assert '"__cache__"' not in path.read_text(), path.name


def test_the_addon_uses_the_packages_api_not_the_engine() -> None:
    """The addon imports the package's modules, never ``ormcache_redis._native``
    (tests included): the engine's names it needs are the package's."""
    offenders = []
    for path in sorted(ADDON_PATH.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name.startswith("ormcache_redis._native") for name in names):
                offenders.append(f"{path.relative_to(ADDON_PATH)}:{node.lineno}")
    assert offenders == []
