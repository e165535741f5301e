"""The tree is the architecture: which package may import which (STYLE.md §4, §14–16).

Every import of every module is read with ``ast`` (lazy imports inside
functions included), so a rule broken anywhere fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hifly_batch"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, *, at_import_time: bool = False) -> set[str]:
    """Every module ``path`` imports, as dotted names (``from a import b`` gives a and a.b):
    relative imports resolved, and ``importlib.import_module("...")`` with a literal name.
    ``at_import_time``: only the imports its module body runs when it is imported."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text("utf-8"))
    nodes = tree.body if at_import_time else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif _literal_import(node):
            found.add(str(node.args[0].value))  # type: ignore[attr-defined]
    return found


def _literal_import(node: ast.AST) -> bool:
    """``importlib.import_module("name")`` or ``__import__("name")``."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__") and isinstance(node.args[0], ast.Constant)


PATHS = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(p): imports_of(p) for p in PATHS}
LOADED = {module_name(p): imports_of(p, at_import_time=True) for p in PATHS}


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def reachable(start: str) -> set[str]:
    """Every name that importing the modules under ``start`` imports, directly or through
    the other modules of this package it loads."""
    names: set[str] = set()
    visited: set[str] = set()
    todo = [m for m in LOADED if in_package(m, start)]
    while todo:
        module = todo.pop()
        if module in visited:
            continue
        visited.add(module)
        for name in LOADED[module]:
            names.add(name)
            # Importing a.b.c runs a, a.b and a.b.c.
            parts = name.split(".")
            todo.extend(
                p for p in (".".join(parts[:n]) for n in range(1, len(parts) + 1)) if p in LOADED
            )
    return names


def offenders(importer: str, forbidden: tuple[str, ...]) -> list[str]:
    """``module imports name`` for each import of a module under ``importer`` that is
    under one of ``forbidden``."""
    return sorted(
        f"{module} imports {name}"
        for module, names in MODULES.items()
        if in_package(module, importer)
        for name in names
        if any(in_package(name, f) for f in forbidden)
    )


ENTRY_POINTS = ("hifly_batch.cli", "hifly_batch.campaign", "hifly_batch.commands")
LAYERS = (
    "hifly_batch.api",
    "hifly_batch.core",
    "hifly_batch.manifest",
    "hifly_batch.reports",
    "hifly_batch.runner",
    "hifly_batch.sandbox",
)


RULES = [
    # (layer, what it must not import, why)
    ("hifly_batch.core", ("requests", "sqlite3", "psycopg", "urllib3"), "the core does no I/O"),
    (
        "hifly_batch.core",
        ("hifly_batch.api", "hifly_batch.runner", "hifly_batch.reports", "hifly_batch.commands"),
        "the core is below every other layer",
    ),
    (
        "hifly_batch.api",
        ("hifly_batch.manifest", "hifly_batch.runner", "hifly_batch.core"),
        "the client knows nothing of manifests or runs",
    ),
    (
        "hifly_batch.sandbox",
        ("hifly_batch.api", "hifly_batch.runner", "hifly_batch.core", "hifly_batch.reports"),
        "the sandbox shares no code with the client, nor with what drives it",
    ),
    (
        "hifly_batch.runner",
        ("hifly_batch.reports", "hifly_batch.commands", "hifly_batch.campaign"),
        "the runner reports progress through a callback and knows no command",
    ),
    (
        "hifly_batch.reports",
        ("hifly_batch.api", "hifly_batch.commands", "hifly_batch.campaign"),
        "reports read records; they neither call the API nor run anything",
    ),
    ("hifly_batch.manifest", ("requests", "sqlite3"), "loading a manifest does no network"),
    (
        "hifly_batch.manifest",
        ("hifly_batch.api", "hifly_batch.runner", "hifly_batch.reports", "hifly_batch.core"),
        "the manifest model is below the core",
    ),
    *((layer, ENTRY_POINTS, f"{layer} is below the entry points") for layer in LAYERS),
    *(
        (shared, (*LAYERS, *ENTRY_POINTS, "requests", "sqlite3"), f"{shared} is shared by all")
        for shared in (
            "hifly_batch.errors",
            "hifly_batch.console",
            "hifly_batch.apispec",
            "hifly_batch.files",
        )
    ),
]


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("hifly_batch.sandbox", ("hifly_batch.api",)),
        ("hifly_batch.core", ("requests", "sqlite3", "urllib3", "psycopg")),
        ("hifly_batch.api", ("hifly_batch.manifest", "hifly_batch.runner", "hifly_batch.core")),
    ],
)
def test_nothing_forbidden_is_loaded_indirectly(layer: str, forbidden: tuple[str, ...]) -> None:
    found = {n for n in reachable(layer) if any(in_package(n, f) for f in forbidden)}
    assert found == set()


@pytest.mark.parametrize(("layer", "forbidden", "why"), RULES, ids=[r[2] for r in RULES])
def test_layers_import_only_what_is_below_them(
    layer: str, forbidden: tuple[str, ...], why: str
) -> None:
    assert offenders(layer, forbidden) == [], why


def test_no_command_imports_another_command() -> None:
    found = [
        f"{module} imports {name}"
        for module, names in MODULES.items()
        if in_package(module, "hifly_batch.commands")
        for name in names
        if in_package(name, "hifly_batch.commands") and name != module
    ]
    assert found == []


def test_the_top_level_keeps_only_entry_points_and_what_every_layer_shares() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")}
    shared = {"errors", "console", "apispec", "files"}
    entry_points = {"__init__", "__main__", "cli", "campaign"}
    assert top == shared | entry_points


def test_no_two_modules_share_a_name() -> None:
    """Each layer's ``errors`` is the one name kept on purpose (its error family)."""
    by_stem: dict[str, list[str]] = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        if path.stem not in ("__init__", "__main__", "errors"):
            by_stem[path.stem].append(str(path.relative_to(PACKAGE)))
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    shared = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    clashing_packages = {stem for stem in by_stem if stem in packages}
    # A command module is named for its verb; a verb that is also a package name clashes.
    assert shared == {} and clashing_packages == set()


def test_every_error_a_layer_raises_descends_from_the_root() -> None:
    from hifly_batch.api import errors as api_errors
    from hifly_batch.errors import HiflyBatchError
    from hifly_batch.runner import errors as runner_errors

    for module, base in (
        (api_errors, api_errors.ClientError),
        (runner_errors, runner_errors.RunError),
    ):
        classes = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Exception) and v.__module__ == module.__name__
        ]
        assert classes and all(
            issubclass(c, base) and issubclass(c, HiflyBatchError) for c in classes
        )


def test_the_command_line_loads_the_sandbox_only_when_asked() -> None:
    """Every command's parser, and a run's whole code path, load without the sandbox
    package: it is large, and every start of the CLI (a pre-commit hook, a makespan)
    would pay for it."""
    probe = (
        "import sys\n"
        "from hifly_batch import cli\n"
        "cli.build_parser()\n"
        "import hifly_batch.campaign, hifly_batch.commands.run\n"
        "print(sorted(m for m in sys.modules if m.startswith('hifly_batch.sandbox')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
