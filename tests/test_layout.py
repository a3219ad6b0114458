"""The import graph follows the layout (docs/architecture.md, "Code map"): no circles, and
no import that goes up a layer or against the direction of the apps.

grimp reads every import of the project's packages, at the top of a file or inside a
function (a lazy import still ties two modules together).
"""

from __future__ import annotations

from functools import cache

import grimp
import pytest

# Lowest first. An app may use the apps before it; its models only the models before it.
APPS = ["accounts", "catalogue", "endpoints", "deliveries", "tooling", "operations"]
# Below every app: helpers that know no model.
LIB = "lib"
# Above everything: settings, root URLs, the process runner.
PROJECT = "webhooks_project"
PACKAGES = [LIB, *APPS, PROJECT]
# What each app may import of the apps after it (the engine's public functions, mostly).
UPWARD_ALLOWED: dict[str, set[str]] = {
    # Webhook pages and the API send tests, retry and disable through the engine.
    "endpoints": {"deliveries"},
}
# Modules that receive requests or commands: nothing below them may import them.
INTERFACE_NAMES = {"views", "forms", "api", "admin", "urls", "serializers", "management"}
INTERFACE_SUFFIXES = ("_api", "_views", "_forms", "api_schema")
# Small helpers of the deliveries models that import nothing but lib.
MODEL_HELPERS = {"deliveries.results", "deliveries.sql"}


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)


def is_ours(module: str) -> bool:
    return ".migrations" not in module


def is_interface(module: str) -> bool:
    parts = module.split(".")
    return bool(INTERFACE_NAMES & set(parts[1:])) or parts[-1].endswith(INTERFACE_SUFFIXES)


def imports() -> list[tuple[str, str]]:
    g = graph()
    found = []
    for importer in sorted(g.modules):
        if not is_ours(importer):
            continue
        for imported in sorted(g.find_modules_directly_imported_by(importer)):
            if is_ours(imported):
                found.append((importer, imported))
    return found


def app_of(module: str) -> str:
    return module.split(".")[0]


def circles() -> list[list[str]]:
    """Groups of modules that reach each other through imports (Tarjan's algorithm)."""
    edges: dict[str, set[str]] = {}
    for importer, imported in imports():
        edges.setdefault(importer, set()).add(imported)
        edges.setdefault(imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_it_has_no_import_circle() -> None:
    assert circles() == []


def test_it_keeps_lib_free_of_the_apps() -> None:
    wrong = [(a, b) for a, b in imports() if app_of(a) == LIB and app_of(b) != LIB]
    assert wrong == []


def test_it_imports_apps_only_downwards() -> None:
    wrong = []
    for importer, imported in imports():
        source, target = app_of(importer), app_of(imported)
        if source not in APPS or target not in APPS:
            continue
        if APPS.index(target) > APPS.index(source) and target not in UPWARD_ALLOWED.get(
            source, set()
        ):
            wrong.append((importer, imported))
    assert wrong == []


def test_it_lets_models_import_only_models_below_them_and_lib() -> None:
    wrong = []
    for importer, imported in imports():
        if importer.split(".")[-1] != "models" or app_of(importer) not in APPS:
            continue
        target = app_of(imported)
        if target == LIB or imported in MODEL_HELPERS:
            continue
        if (
            imported.split(".")[-1] == "models"
            and target in APPS
            and APPS.index(target) < APPS.index(app_of(importer))
        ):
            continue
        wrong.append((importer, imported))
    assert wrong == []


def test_it_lets_no_service_import_an_interface() -> None:
    wrong = [
        (a, b)
        for a, b in imports()
        if app_of(a) in [LIB, *APPS]
        and not is_interface(a)
        and is_interface(b)
        and not a.endswith(".apps")
    ]
    assert wrong == []


@pytest.mark.parametrize("app", ["deliveries"])
def test_it_keeps_the_engine_away_from_tooling_and_pages(app: str) -> None:
    wrong = [
        (a, b)
        for a, b in imports()
        if app_of(a) == app
        and (
            app_of(b) == "tooling" or (app_of(b) != app and is_interface(b) and not is_interface(a))
        )
    ]
    assert wrong == []


def test_it_reads_the_whole_graph() -> None:
    found = set(imports())
    assert ("deliveries.models", "endpoints.models") in found
    assert ("deliveries.engine.claiming", "lib.http") in found
    assert len(found) > 200


# The REST API's shared plumbing (authentication, errors, parsing): every app's API uses it.
SHARED_INTERFACES = {"accounts.api", "accounts.api_schema"}


def test_it_uses_the_interfaces_of_no_app_above() -> None:
    """An app may build on the pages and forms of the apps below it, never above: the
    engine's users call its services, not its views, forms or commands."""
    wrong = [
        (a, b)
        for a, b in imports()
        if app_of(a) in APPS
        and app_of(b) in APPS
        and APPS.index(app_of(b)) > APPS.index(app_of(a))
        and is_interface(b)
        and b not in SHARED_INTERFACES
    ]
    assert wrong == []
