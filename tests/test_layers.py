"""The architecture as the folder list shows it, checked: which package may import which.

The packages form layers, lowest first: `domain` (pure rules) < `observe` (metrics and
log context, fed by whoever observes) < `config` < `store` (the database) < `storage`
(shared bytes) < `security`, `queues`, `backends` < `host` (what a replica runs), `services`
(use cases) < `web` < `ui`, `api` (the edges); `cli` is the client; `server` (the
composition root) may import anything. An import against the layers is a
back-arrow; this test names it. `runtime/` holds the programs run inside a sandbox, started
with `python -I -S`: they import nothing of Chidori.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "chidori"

ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "runtime": set(),
    "observe": {"domain"},
    "config": {"domain"},
    "store": {"domain", "observe"},
    "storage": {"domain", "store"},
    "security": {"storage"},
    "queues": {"config", "domain", "store"},
    "backends": {"config", "domain", "storage"},
    "host": {"backends", "config", "domain", "observe", "storage", "store"},
    "services": {"config", "domain", "security", "storage", "store"},
    "web": {"domain", "services", "storage"},
    "ui": {"domain", "security", "services", "web"},
    # The API app mounts the UI's routers (the composition of one ASGI app).
    "api": {"config", "domain", "observe", "services", "storage", "ui", "web"},
    "cli": {"backends", "config", "domain", "storage", "store"},
    # The Spark Connect door: an edge, like api, that also reads where the Connect drivers
    # hosted here listen (host.jobfs, the job folders read without following links).
    "connect": {"config", "domain", "host", "services"},
}
# Files allowed over the size rule, and why.
LONG_FILES: dict[str, str] = {}
MAX_LINES = 500


def package_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def chidori_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "chidori" and len(parts) > 1:
                found.add(parts[1])
    return found


SOURCES = sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_against_the_layers(path: Path) -> None:
    package = package_of(path)
    if package in ("server", "__main__", "__init__"):
        return
    assert package in ALLOWED, f"a new package {package!r}: give it its place in ALLOWED"
    wrong = {p for p in chidori_imports(path) if p != package} - ALLOWED[package]
    assert not wrong, f"{path.relative_to(SRC)} imports {sorted(wrong)} against the layers"


def test_the_allowed_imports_have_no_circle() -> None:
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(package: str, path: list[str]) -> None:
        if seen.get(package) == 1:
            pytest.fail("circle: " + " -> ".join([*path, package]))
        if seen.get(package) == 2:
            return
        seen[package] = 1
        for lower in ALLOWED.get(package, set()):
            visit(lower, [*path, package])
        seen[package] = 2

    for package in ALLOWED:
        visit(package, [])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_source_files_stay_small_and_say_what_they_are(path: Path) -> None:
    relative = str(path.relative_to(SRC))
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_LINES or relative in LONG_FILES, f"{relative}: {lines} lines"
    if text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{relative} has no module docstring"
