"""The layers import only downward: bronze knows nothing of silver, silver nothing of gold, gold
nothing of ml, and no asset or sensor imports the `refinery-datasets` command-line module (they use
the registry's read side, refinery.resources.registry). Read from the source, so a function-level
import counts as much as a top-level one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "refinery"
LATER = {
    "bronze": ("refinery.assets.silver", "refinery.assets.gold", "refinery.assets.ml"),
    "silver": ("refinery.assets.gold", "refinery.assets.ml", "refinery.assets.online"),
    "gold": ("refinery.assets.ml", "refinery.assets.online"),
}


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
    for path in sorted((PACKAGE / "assets" / layer).glob("*.py")):
        later = [m for m in imported_modules(path) if m.startswith(LATER[layer])]
        assert later == [], f"{path.relative_to(PACKAGE.parent)} imports {later}"


def test_no_asset_sensor_or_definition_imports_the_cli_module():
    for folder in ("assets", "sensors", "defs"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            assert "refinery.datasets" not in imported_modules(path), path
