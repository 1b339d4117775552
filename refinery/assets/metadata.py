"""Metadata every materialization records: row counts, quality measures, schema, location."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue
from pandera.errors import SchemaError, SchemaErrors

from refinery.contracts.rules import Contract
from refinery.quality import DEFAULT_HALF_LIFE_HOURS, completeness, consistency, freshness


def quality_measures(
    frame: pl.DataFrame,
    required: list[str],
    *,
    passing_rows: int,
    evaluated_rows: int,
    newest: datetime | None,
    half_life_hours: float = DEFAULT_HALF_LIFE_HOURS,
) -> dict:
    """The quality measures of DESIGN.md as materialization metadata (silver and gold)."""
    complete = completeness(frame, required)
    return {
        "quality/completeness": round(complete.pop("table"), 6),
        "quality/completeness_by_column": MetadataValue.json(
            {k: round(v, 6) for k, v in complete.items()}
        ),
        "quality/consistency": round(consistency(passing_rows, evaluated_rows), 6),
        "quality/freshness": round(freshness(newest, half_life_hours=half_life_hours), 6),
        "newest_record_time": str(newest) if newest is not None else "none",
    }


def quality_metadata(
    frame: pl.DataFrame,
    contract: Contract,
    *,
    passing_rows: int,
    evaluated_rows: int,
    newest: datetime | None,
    half_life_hours: float,
    path: Path,
) -> dict:
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": contract.dagster_table_schema(),
        "path": MetadataValue.path(str(path)),
        **quality_measures(
            frame,
            contract.required,
            passing_rows=passing_rows,
            evaluated_rows=evaluated_rows,
            newest=newest,
            half_life_hours=half_life_hours,
        ),
    }


def contract_check(
    frame: pl.DataFrame, contract: Contract, *, check_name: str, asset_key, blocking: bool
) -> AssetCheckResult:
    """Validate `frame` (read back from what was written) with the contract's Pandera schema."""
    try:
        contract.pandera_schema().validate(frame, lazy=True)
    except (SchemaErrors, SchemaError) as err:
        cases = getattr(err, "failure_cases", None)
        summary = _failure_summary(cases) if cases is not None else str(err)[:2000]
        return AssetCheckResult(
            asset_key=asset_key,
            check_name=check_name,
            passed=False,
            severity=AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN,
            description=f"{contract.name} contract broken: {summary[:500]}",
            metadata={"failures": MetadataValue.md(summary)},
        )
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=True,
        metadata={"rows_validated": frame.height, "contract": contract.name},
    )


def _failure_summary(cases) -> str:
    frame = cases if isinstance(cases, pl.DataFrame) else pl.from_pandas(cases)
    cols = [c for c in ("schema_context", "column", "check", "failure_case") if c in frame.columns]
    grouped = (
        frame.select([pl.col(c).cast(pl.String) for c in cols])
        .group_by(cols[:-1] or cols)
        .agg(pl.len().alias("failures"), pl.col(cols[-1]).first().alias("example"))
    )
    lines = ["| " + " | ".join([*cols[:-1], "failures", "example"]) + " |"]
    lines.append("|" + "---|" * (len(cols) + 1))
    for row in grouped.sort("failures", descending=True).iter_rows():
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)
