"""Static checks of the two HTTP edges (`chidori.api`, `chidori.ui`): neither is a layer of the
other's (the UI imports nothing from the API; what both need is in `chidori.web`), and API
route handlers do not catch domain errors to answer them (each protocol's exception handlers
do: see chidori.api.errors)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import chidori
import chidori.domain.errors

SRC = Path(chidori.__file__).parent
CATCH_ALL = {"<bare except>", "Exception", "BaseException"}
ROUTE_DECORATORS = {"get", "post", "put", "patch", "delete", "head", "options", "api_route"}
DOMAIN_ERRORS = {
    name
    for name, value in vars(chidori.domain.errors).items()
    if isinstance(value, type) and issubclass(value, chidori.domain.errors.ChidoriError)
}


def _modules(package: str) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted((SRC / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def test_the_ui_imports_nothing_from_the_api() -> None:
    found = [
        f"{path.relative_to(SRC)}:{line}: {name}"
        for path, tree in _modules("ui")
        for line, name in _imported(tree)
        if name == "chidori.api" or name.startswith("chidori.api.")
    ]
    assert not found, "ui/ imports chidori.api (shared code belongs in chidori.web):\n" + "\n".join(
        found
    )


def test_the_shared_web_module_imports_neither_edge() -> None:
    found = [
        f"{path.relative_to(SRC)}:{line}: {name}"
        for path, tree in _modules("web")
        for line, name in _imported(tree)
        if name.startswith(("chidori.api", "chidori.ui"))
    ]
    assert not found, "\n".join(found)


def _is_route(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr in ROUTE_DECORATORS:
            return True
    return False


def _caught_names(handler: ast.ExceptHandler) -> set[str]:
    if handler.type is None:
        return {"<bare except>"}
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    names = set()
    for kind in kinds:
        if isinstance(kind, ast.Name):
            names.add(kind.id)
        elif isinstance(kind, ast.Attribute):
            names.add(kind.attr)
    return names


def test_api_route_handlers_leave_domain_errors_to_the_exception_handlers() -> None:
    found = []
    routes = 0
    for path, tree in _modules("api"):
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not _is_route(function):
                continue
            routes += 1
            for node in ast.walk(function):  # nested helpers of the handler included
                if isinstance(node, ast.Try | ast.TryStar):
                    for handler in node.handlers:
                        caught = _caught_names(handler) & (DOMAIN_ERRORS | CATCH_ALL)
                        if caught:
                            where = f"{path.relative_to(SRC)}:{handler.lineno}"
                            found.append(f"{where} {function.name} catches {sorted(caught)}")
    assert routes > 40  # the walk does find the routes
    assert not found, "\n".join(found)
