"""Point-in-time lookups for backtests: features of users as of date D, from the gold marts.

The marts are the files the training sets are cut from; a user without a row on D (not active in
the 30 days up to D, or unknown) has no features as of D, and gets the cold-start record.
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from refinery.online.records import cold_start_body, feature_names, mart_path


class NoFeaturesForDate(LookupError):
    """The gold mart has no file for that as-of date (outside the lake's history)."""


@functools.lru_cache(maxsize=8)
def _mart(path: Path, mtime_ns: int) -> tuple[pl.DataFrame, dict[str, int]]:
    frame = pl.read_parquet(path)
    return frame, {user: i for i, user in enumerate(frame.get_column("user_id").to_list())}


def mart_frame(gold_dir: Path, as_of: date) -> tuple[pl.DataFrame, dict[str, int]]:
    path = mart_path(gold_dir, as_of)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError as exc:
        raise NoFeaturesForDate(
            f"no gold features for as-of date {as_of.isoformat()} (no {path.name} under "
            f"{path.parent.parent}): the date is outside the lake's history"
        ) from exc
    return _mart(path, mtime)


def features_as_of(
    gold_dir: Path, user_ids: list[str], as_of: date, version: str | None = None
) -> list[dict[str, Any]]:
    """One body per user, in the order asked, shaped like the online API's."""
    frame, index = mart_frame(gold_dir, as_of)
    names = feature_names(frame.schema)
    rows = frame.select(names).row
    out = []
    for user in user_ids:
        i = index.get(user)
        if i is None:
            out.append(cold_start_body(user, names, version))
            continue
        out.append(
            {
                "user_id": user,
                "known": True,
                "as_of_date": as_of.isoformat(),
                "training_set_version": version,
                "features": dict(zip(names, rows(i), strict=True)),
            }
        )
    return out
