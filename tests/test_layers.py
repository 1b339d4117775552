"""The layers import only downward: bronze knows nothing of silver, silver nothing of gold, gold
nothing of ml, and no asset or sensor imports a command-line module (`refinery-datasets`: they use
the registry's read side, refinery.resources.registry; `refinery-synth`, the demo). Inside a layer,
the pure modules (drift statistics, report and rendering; gold's planner and export) import no
Dagster, and gold's dbt preparation imports nothing of the gold package (`dagster-dbt project
prepare-and-package --file` loads it alone, before a manifest exists). Read from the source, so a
function-level import counts as much as a top-level one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "refinery"
LATER = {
    "bronze": ("refinery.assets.silver", "refinery.assets.gold", "refinery.assets.ml"),
    "silver": ("refinery.assets.gold", "refinery.assets.ml", "refinery.assets.online"),
    "gold": ("refinery.assets.ml", "refinery.assets.online"),
    "ml": ("refinery.assets.online",),
}
CLI_MODULES = ("refinery.datasets", "refinery.synth.cli", "refinery.demo", "refinery.demo_summary")
PURE = (
    "assets/ml/drift/statistics.py",
    "assets/ml/drift/report.py",
    "assets/ml/drift/render.py",
    "assets/ml/profile.py",
    "assets/gold/plan.py",
    "assets/gold/export.py",
)


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("layer", sorted(LATER))
def test_a_layer_imports_no_later_layer(layer):
    paths = sorted((PACKAGE / "assets" / layer).rglob("*.py"))
    assert paths
    for path in paths:
        later = [m for m in imported_modules(path) if m.startswith(LATER[layer])]
        assert later == [], f"{path.relative_to(PACKAGE.parent)} imports {later}"


def test_no_asset_sensor_or_definition_imports_a_cli_module():
    for folder in ("assets", "sensors", "defs"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            cli = [m for m in imported_modules(path) if m in CLI_MODULES]
            assert cli == [], f"{path.relative_to(PACKAGE.parent)} imports {cli}"


@pytest.mark.parametrize("module", PURE)
def test_the_pure_modules_import_no_dagster(module):
    imported = imported_modules(PACKAGE / module)
    dagster = [m for m in imported if m.split(".")[0] in ("dagster", "dagster_dbt")]
    assert dagster == [], f"refinery/{module} imports {dagster}"


def test_dbt_preparation_imports_nothing_of_the_gold_package():
    imported = imported_modules(PACKAGE / "assets" / "gold" / "dbt_project.py")
    gold = [m for m in imported if m.startswith("refinery.assets")]
    assert gold == [], f"refinery/assets/gold/dbt_project.py imports {gold}"
