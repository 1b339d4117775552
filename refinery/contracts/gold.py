"""Gold contracts: what the marts promise their consumers, checked on the exported Parquet.

The columns are declared once, in dbt (`dbt_project/models/marts/_marts.yml`: name, `data_type`,
`not_null` tests; descriptions in `_features.md` docs blocks). dbt enforces that declaration when
it builds a mart (`contract: enforced`), and this module builds the Pandera contract from the
same declaration, never from the frame it checks: a dropped, renamed or retyped column fails
both. On top, the rules a model trainer relies on: keys present and unique, labels binary,
counts, amounts and ratios non-negative, shares in [0, 1].
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import polars as pl
import yaml

from refinery.contracts.rules import Column, Contract

KEY = ("user_id", "as_of_date")
MARTS_DIR = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "marts"
# dbt data_type (DuckDB) -> the Polars type the exported Parquet reads back as
DBT_TYPES = {
    "varchar": pl.String(),
    "date": pl.Date(),
    "bigint": pl.Int64(),
    "integer": pl.Int32(),
    "double": pl.Float64(),
    "boolean": pl.Boolean(),
}
_DOC_REF = re.compile(r"""\{\{\s*doc\(\s*['"](\w+)['"]\s*\)\s*\}\}""")
_DOC_BLOCK = re.compile(r"\{%\s*docs\s+(\w+)\s*%\}(.*?)\{%\s*enddocs\s*%\}", re.DOTALL)


def _is_share(name: str) -> bool:
    # Conversion ratios (`*_rate_*`) may exceed 1: a purchase need not follow a logged cart.
    return name.startswith("share_")


@functools.cache
def _docs() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for path in sorted(MARTS_DIR.glob("*.md")):
        blocks |= {
            name: " ".join(text.split()) for name, text in _DOC_BLOCK.findall(path.read_text())
        }
    return blocks


def _description(raw: str | None) -> str:
    raw = raw or ""
    return _DOC_REF.sub(lambda match: _docs().get(match.group(1), match.group(0)), raw).strip()


@functools.cache
def declared_columns(model: str) -> tuple[Column, ...]:
    """The mart's columns as dbt declares them: name, type, nullability, description."""
    declaration = yaml.safe_load((MARTS_DIR / "_marts.yml").read_text())
    models = {entry["name"]: entry for entry in declaration["models"]}
    if model not in models:
        raise KeyError(f"no gold mart {model!r} in {MARTS_DIR / '_marts.yml'}")
    columns = []
    for column in models[model]["columns"]:
        data_type = str(column.get("data_type", "")).lower()
        if data_type not in DBT_TYPES:
            raise ValueError(
                f"{model}.{column['name']}: data_type {data_type!r} is not one of {sorted(DBT_TYPES)}"
            )
        tests = column.get("data_tests") or []
        not_null = any(test == "not_null" or "not_null" in test for test in tests if test)
        columns.append(
            Column(
                column["name"],
                DBT_TYPES[data_type],
                not not_null,
                _description(column.get("description")),
            )
        )
    return tuple(columns)


def gold_contract(model: str) -> Contract:
    columns = declared_columns(model)
    constraints: dict[str, pl.Expr] = {}
    for column in columns:
        name = column.name
        if name in KEY:
            continue
        if name == "label":
            constraints["label_not_binary"] = pl.col(name).is_in([0, 1])
        elif column.dtype.is_numeric():
            ok = pl.col(name).is_null() | (pl.col(name) >= 0)
            if _is_share(name):
                ok = pl.col(name).is_null() | pl.col(name).is_between(0, 1)
            constraints[f"{name}_out_of_range"] = ok
    return Contract(
        name=f"gold_{model}", columns=columns, constraints=constraints, unique=KEY, strict=True
    )
