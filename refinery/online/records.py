"""One user's online record, encoded from one row of the gold mart, and the feature contract.

The values are never recomputed: a record is the mart row's own values, serialised once with
orjson (floats as their shortest round-trip repr, so a float comes back bit for bit) into the
exact JSON body the server returns. Parity with the training sets holds by construction.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from refinery.contracts.gold import KEY, gold_contract

FEATURE_MART = "user_daily_features"


def mart_path(gold_dir: Path, as_of_date: date) -> Path:
    """`<gold dir>/user_daily_features/as_of_date=<D>/data.parquet`: the layout gold's export
    writes (refinery.assets.gold.export.mart_file; a test pins the two equal). Spelled here so the
    server and the sync need not import the gold package, which loads dbt and Dagster (~5 s)."""
    return Path(gold_dir) / FEATURE_MART / f"as_of_date={as_of_date.isoformat()}" / "data.parquet"


def feature_schema(schema: pl.Schema) -> list[dict[str, Any]]:
    """The feature list of the mart: name, type, nullable, description, in column order.

    Names, types, nullability and descriptions come from the gold contract
    (`refinery.contracts.gold`): the mart's dbt declaration, which the offline marts are checked
    against. `schema` (the served mart's) must carry every declared column.
    """
    contract = gold_contract(FEATURE_MART)
    missing = [c.name for c in contract.columns if c.name not in schema]
    if missing:
        raise ValueError(f"the served {FEATURE_MART} lacks declared columns {missing}")
    return [
        {
            "name": column.name,
            "type": str(column.dtype),
            "json_type": _json_type(column.dtype),
            "nullable": column.nullable,
            "description": column.description,
        }
        for column in contract.columns
        if column.name not in KEY
    ]


def _json_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "number"
    if dtype == pl.Boolean:
        return "boolean"
    return "string"


def feature_names(schema: pl.Schema) -> list[str]:
    return [name for name in schema if name not in KEY]


def encode_records(frame: pl.DataFrame, version: str | None) -> list[tuple[str, str, bytes, bytes]]:
    """(user_id, as_of_date, digest, body) per row of one as-of date of the mart.

    body is the JSON the API returns for the user (without the per-request freshness);
    digest identifies it, so a rerun that would write the same bytes writes nothing.
    """
    names = feature_names(frame.schema)
    out = []
    for row in frame.iter_rows(named=True):
        as_of = row["as_of_date"].isoformat()
        body = orjson.dumps(
            {
                "user_id": row["user_id"],
                "known": True,
                "as_of_date": as_of,
                "training_set_version": version,
                "features": {name: row[name] for name in names},
            }
        )
        out.append((row["user_id"], as_of, hashlib.blake2b(body, digest_size=16).digest(), body))
    return out


def cold_start_body(user_id: str, names: list[str], version: str | None) -> dict[str, Any]:
    """What an unknown user gets: every feature null, as the offline path has no row for them."""
    return {
        "user_id": user_id,
        "known": False,
        "as_of_date": None,
        "training_set_version": version,
        "features": dict.fromkeys(names),
    }


def end_of_day(day: date | str) -> datetime:
    """Features as of D know everything that arrived by the end of D (UTC)."""
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)


def freshness_seconds(as_of: date | str, now: datetime | None = None) -> int:
    """Seconds since the end of the as-of date (how old the newest knowledge behind it is)."""
    now = now or datetime.now(UTC)
    return int((now - end_of_day(as_of)).total_seconds())
