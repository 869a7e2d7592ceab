"""Dependencies point one way, from pure code up to wiring (STYLE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sse_hub"

LAYERS: list[tuple[str, set[str], set[str]]] = [
    # (layer, modules, third-party packages it may import)
    (
        "pure",
        {
            "errors",
            "config",
            "config_reference",
            "events",
            "frames",
            "replay",
            "ranges",
            "terminal",
            "ratelimit",
            "heartbeats",
            "reconnect",
            "probe_plan",
            "probe_report",
            "recent",
        },
        set(),
    ),
    ("asyncio", {"subscriber", "broker", "tasks"}, set()),
    (
        "database",
        {
            "store",
            "listener",
            "embedded_pg",
            "database",
            "migrate",
            "committer",
            "feed",
            "heads",
            "retention",
            "hub",
        },
        {"asyncpg"},
    ),
    (
        "http",
        {
            "stream",
            "publish",
            "downloads",
            "auth",
            "ops",
            "problems",
            "keys",
            "metrics",
            "cors",
            "fallbacks",
            "dashboard",
            "throttle",
            "accesslog",
            "sink",
            "live",
            "client",
            "probe",
            "request_view",
            "front_door",
        },
        {"aiohttp", "aiofiles", "jwt", "prometheus_client", "cryptography", "multidict", "yarl"},
    ),
    ("wiring", {"app", "cli", "server", "runner", "__main__", "__init__", "api"}, set()),
]


def _layer_of(module: str) -> int:
    for index, (_, modules, _) in enumerate(LAYERS):
        if module in modules:
            return index
    raise AssertionError(f"sse_hub/{module}.py is in no layer: add it to tests/test_layers.py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "sse_hub":
                names.update(f"sse_hub.{alias.name}" for alias in node.names)
    return names


MODULES = sorted(path.stem for path in PACKAGE.glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_imports_follow_the_layers(module: str) -> None:
    own = _layer_of(module)
    allowed_third_party = set().union(*(third for _, _, third in LAYERS[: own + 1]))
    for name in _imports(PACKAGE / f"{module}.py"):
        top = name.split(".")[0]
        if top == "sse_hub":
            if name == "sse_hub":
                continue
            target = name.split(".")[1]
            assert _layer_of(target) <= own, f"{module} ({LAYERS[own][0]}) imports {target}"
        elif top in sys.stdlib_module_names or top == "__future__":
            continue
        elif LAYERS[own][0] != "wiring":
            assert top in allowed_third_party, f"{module} ({LAYERS[own][0]}) imports {top}"
