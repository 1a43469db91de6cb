"""The shape of the code, enforced: imports run one way through the layers of ARCHITECTURE.md,
no import hides inside a function to dodge a cycle, wechatpy stays in the WeChat channel, and every
mapped table is in the metadata Alembic compares."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import app

APP_DIR = Path(app.__file__).parent
ROOT = APP_DIR.parent

#: Layers from the top. A module may import from its own package or a lower layer; channel modules
#: (layer 1) may also use each other (shared auth, schemas).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("composition",),  # app, app.cli, app.demo, app.models: the application factory and its commands
    ("channels", "console"),  # WeChat, DMS, API, console, CLI: translate the outside world into domain calls
    ("reporting",),  # the dashboard's rollups: reads every domain package's tables
    ("campaigns", "care", "complaints", "benefits", "referrals", "crm"),
    ("mall",),  # below care: the care engine may ask it for recommendations
    ("members",),
    ("points",),
    ("tiers",),
    ("operators",),
    ("dealers",),
    ("gateways", "jobs"),
    ("extensions",),
    ("core",),
    ("config",),
)
COMPOSITION = {"app", "app.cli", "app.demo", "app.models"}
CHANNEL_PACKAGES = {"wechat", "sync", "api", "console"}
#: Modules of a domain package that belong to its channel: its blueprints, schemas, commands and
#: console tabs (``app/<package>/console.py`` adds its member-360 tab to ``app/console/registry``).
CHANNEL_MODULE_NAMES = ("api", "schemas", "cli", "console")
#: Functions that compose: they import packages lazily on purpose (at app build or worker start).
COMPOSING_FUNCTIONS = {"register", "create_app", "_packages", "_app_for_worker"}


def is_channel_module(module: str) -> bool:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in CHANNEL_PACKAGES:
        return True
    return (
        len(parts) >= 3
        and parts[1] != "core"
        and any(parts[2] == name or parts[2].endswith(f"_{name}") for name in CHANNEL_MODULE_NAMES)
    )


def layer_of(module: str) -> int:
    if module in COMPOSITION:
        return 0
    if is_channel_module(module):
        return 1
    package = module.split(".")[1]
    for index, names in enumerate(LAYERS):
        if package in names:
            return index
    raise AssertionError(f"{module}: its package is in no layer of LAYERS; add it (and to ARCHITECTURE.md)")


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    function: str | None


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolved(node: ast.ImportFrom, source: str, is_package: bool) -> list[str]:
    if node.level:
        base = source.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # "from app.x import y": y may be a module (app.x.y) or a name in app.x; take the module if it exists.
    targets = []
    for alias in node.names:
        candidate = f"{prefix}.{alias.name}"
        is_module = (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
            ROOT / Path(*candidate.split(".")) / "__init__.py"
        ).exists()
        targets.append(candidate if is_module else prefix)
    return targets


def imports_in(path: Path) -> list[Import]:
    return imports_in_code(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")


def imports_in_code(code: str, source: str, is_package: bool = False) -> list[Import]:
    tree = ast.parse(code)
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Import):
                found.extend(Import(source, alias.name, child.lineno, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                targets = resolved(child, source, is_package)
                found.extend(Import(source, target, child.lineno, function) for target in targets)
            visit(child, inner)

    visit(tree, None)
    return found


def all_imports() -> list[Import]:
    return [found for path in sorted(APP_DIR.rglob("*.py")) for found in imports_in(path)]


def violations_of(imports: list[Import]) -> list[str]:
    problems = []
    for found in imports:
        where = f"{found.source}:{found.line} imports {found.target}"
        if found.target.split(".")[0] == "wechatpy" and package_of(found.source) != "wechat":
            problems.append(f"{where}: wechatpy belongs to app/wechat only (use app.gateways)")
        if found.target.split(".")[0] != "app" or found.target == "app":
            continue
        if found.function is not None and found.function not in COMPOSING_FUNCTIONS:
            problems.append(f"{where} inside {found.function}(): import at the top (a cycle means a wrong layer)")
        if found.function in COMPOSING_FUNCTIONS or found.source in COMPOSITION:
            continue
        same_package = package_of(found.source) == package_of(found.target)
        source_layer, target_layer = layer_of(found.source), layer_of(found.target)
        if same_package and not (source_layer > 1 and target_layer == 1):
            continue
        if target_layer < source_layer or (target_layer == source_layer and source_layer != 1):
            problems.append(f"{where}: layer {source_layer} may not import layer {target_layer} (ARCHITECTURE.md)")
    return problems


def test_imports_run_one_way_through_the_layers():
    assert violations_of(all_imports()) == []


@pytest.mark.parametrize(
    ("source", "code", "complaint"),
    [
        ("app.points.ledger", "from app.members.models import Member", "may not import"),
        ("app.members.services", "from app.wechat import replies", "may not import"),
        ("app.members.services", "from app.members.api import blp", "may not import"),
        ("app.care.notify", "from app.campaigns import signup", "may not import"),
        ("app.members.services", "def f():\n    from app.points import ledger", "inside f()"),
        ("app.members.services", "import wechatpy", "wechatpy belongs"),
    ],
)
def test_the_contract_catches_a_wrong_import(source, code, complaint):
    problems = violations_of(imports_in_code(code + "\n", source))
    assert any(complaint in problem for problem in problems), problems


def test_every_mapped_table_is_in_the_metadata_alembic_compares():
    """Alembic imports only ``app.models``; importing every module must not map a table it missed."""
    script = """
import json, pkgutil, importlib
import app.models
known = sorted(app.models.metadata.tables)
import app
for info in pkgutil.walk_packages(app.__path__, "app."):
    importlib.import_module(info.name)
print(json.dumps({"known": known, "all": sorted(app.models.metadata.tables)}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    tables = json.loads(result.stdout.strip().splitlines()[-1])
    assert tables["all"] == tables["known"]
    assert len(tables["known"]) > 20


def test_every_package_is_placed_in_a_layer():
    packages = {info.name for info in pkgutil.iter_modules([str(APP_DIR)])}
    placed = {name for names in LAYERS for name in names} | CHANNEL_PACKAGES | {"cli", "demo", "models"}
    assert packages <= placed, packages - placed
