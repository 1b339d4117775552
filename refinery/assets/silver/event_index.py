"""The event-id index: which event_ids silver already holds, over all of history.

Silver deduplicates a day's events against every earlier partition, not a look-back window: a
re-delivery a year later must not double-count. Reading a year of event_id strings every day
would not stay fast, so each silver events partition carries a compact index beside its parts:
`date=<A>/event_ids.index`, a Parquet file of the sorted 64-bit fingerprints (the low half of
MD5, stable across library versions) of its event_ids. It is written into the partition's staging
folder and swapped in with the parts, so an index always describes exactly the parts beside it.
(The name does not end in `.parquet`, so no reader of the data globs it.)

A day is checked in two steps: probe all earlier indexes for the day's fingerprints (8 bytes an
event, one vectorised scan), then confirm the few hits against the event_ids of the partitions
they came from — a fingerprint collision never drops an event. A partition written before the
index existed gets its index built the first time it is probed.
"""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from refinery.contracts.silver import EVENTS
from refinery.resources.lake import LakePaths, write_parquet_atomic

INDEX_FILE = "event_ids.index"
_local = threading.local()


def _duck() -> duckdb.DuckDBPyConnection:
    if getattr(_local, "con", None) is None:
        _local.con = duckdb.connect()
    return _local.con


def fingerprints(ids: pl.Series) -> pl.Series:
    """UInt64 fingerprints of event_ids, in the same order (MD5's low 64 bits)."""
    frame = pl.DataFrame({"id": ids.cast(pl.String)})  # noqa: F841 - DuckDB replacement scan
    out = _duck().sql("select md5_number_lower(id) as h from frame").pl()
    return out.get_column("h").cast(pl.UInt64).alias("h")


def write_index(ids: pl.Series, path: Path) -> None:
    """The sorted, distinct fingerprints of a partition's event_ids."""
    hashes = fingerprints(ids).unique().sort()
    write_parquet_atomic(hashes.to_frame(), path)


def index_path(paths: LakePaths, day: str) -> Path:
    return paths.partition_dir("silver", "events", day) / INDEX_FILE


def earlier_indexes(paths: LakePaths, arrival: date) -> dict[str, Path]:
    """date -> index file of every silver events partition before `arrival`; a partition without
    one (written before the index existed) gets it built from its parts now."""
    indexes = {}
    for day in paths.existing_partitions("silver", "events"):
        if day >= arrival.isoformat():
            continue
        path = index_path(paths, day)
        if not path.exists():
            parts = paths.partition_parts("silver", "events", day)
            ids = pl.scan_parquet(parts).select("event_id").collect().get_column("event_id")
            write_index(ids, path)
        indexes[day] = path
    return indexes


def prior_rows(paths: LakePaths, arrival: date, ids: pl.Series) -> pl.DataFrame:
    """Silver rows of partitions before `arrival` whose event_id is among `ids` (earliest first).

    The index finds the partitions that may hold any of the ids; only those are read, and only
    their rows with one of the ids."""
    indexes = earlier_indexes(paths, arrival)
    if not indexes or ids.len() == 0:
        return _empty_silver()
    wanted = fingerprints(ids.unique())
    day_of = {str(path): day for day, path in indexes.items()}
    hits = (
        pl.scan_parquet(list(indexes.values()), include_file_paths="_file")
        .filter(pl.col("h").is_in(wanted.implode()))
        .select("_file")
        .unique()
        .collect()
        .get_column("_file")
        .to_list()
    )
    days = sorted(day_of[f] for f in hits)
    if not days:
        return _empty_silver()
    parts = [p for day in days for p in paths.partition_parts("silver", "events", day)]
    return (
        pl.scan_parquet(parts)
        .filter(pl.col("event_id").is_in(ids.unique().implode()))
        .collect()
        .sort(["arrival_date", "_source_file", "_line"], maintain_order=True)
    )


def _empty_silver() -> pl.DataFrame:
    return pl.DataFrame(schema={c.name: c.dtype for c in EVENTS.columns})
