"""The event-id index: which event_ids silver already holds, over all of history.

Silver deduplicates a day's events against every earlier partition, not a look-back window: a
re-delivery a year later must not double-count. Each silver events partition carries an index
beside its parts, `date=<A>/event_ids.index`: a Parquet file, sorted by `h` (the low 64 bits of
MD5 of the event_id: stable across library versions), with the event_id, a fingerprint of the
row's content and where the row came from, in row groups of 4,096 rows. It is written into the
partition's staging folder and swapped in with the parts, so it always describes exactly the parts
beside it. (Its name does not end in `.parquet`, so no reader of the data globs it.)

A day is checked in two passes, neither of which reads silver itself:
1. the `h` column of every earlier index (8 bytes an event, stored uncompressed) goes through a
   bitmap of the day's fingerprints' top 24 bits, and the few survivors are matched exactly
   against the day's sorted fingerprints;
2. only the row groups holding a match are read, and their event_ids compared with the day's:
   a fingerprint collision never drops an event.
A partition written before this layout gets its index built from its parts the first time it is
probed.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq

from refinery.resources.lake import LakePaths

INDEX_FILE = "event_ids.index"
ROW_GROUP = 4096
PREFIX_BITS = 24
# What makes a repeated event_id the same event (compared by fingerprint).
CONTENT = (
    "user_id", "event_type", "event_time", "product_id", "amount", "quantity", "device", "session_id",
)
INDEX_SCHEMA = {
    "h": pl.UInt64,
    "event_id": pl.String,
    "content": pl.UInt64,
    "arrival_date": pl.Date,
    "_source_file": pl.String,
    "_line": pl.Int64,
}
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


def content_fingerprints(rows: pl.DataFrame) -> pl.Series:
    """A 64-bit fingerprint of each row's CONTENT columns (nulls distinct from every value)."""
    parts = [
        pl.col(c).cast(pl.String).fill_null("\x00") if c != "event_time"
        else pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f").fill_null("\x00")
        for c in CONTENT
    ]
    text = rows.select(pl.concat_str(parts, separator="\x1f").alias("id")).to_series()
    return fingerprints(text).alias("content")


def index_rows(silver: pl.DataFrame) -> pl.DataFrame:
    """The index of a partition's silver rows, sorted by fingerprint."""
    return (
        silver.select("event_id", "arrival_date", "_source_file", "_line")
        .with_columns(h=fingerprints(silver["event_id"]), content=content_fingerprints(silver))
        .select(list(INDEX_SCHEMA))
        .cast(INDEX_SCHEMA)
        .sort("h", "event_id")
    )


def write_index(silver: pl.DataFrame, path: Path) -> None:
    write_index_rows(index_rows(silver), path)


def write_index_rows(frame: pl.DataFrame, path: Path) -> None:
    """Fixed writer settings: the same rows give the same bytes; `h` is left uncompressed (random
    64-bit values do not compress, and the probe reads it for every earlier day)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    compression = {c: ("NONE" if c == "h" else "ZSTD") for c in INDEX_SCHEMA}
    pq.write_table(frame.to_arrow(), tmp, row_group_size=ROW_GROUP, compression=compression)
    tmp.replace(path)


def index_path(paths: LakePaths, day: str) -> Path:
    return paths.partition_dir("silver", "events", day) / INDEX_FILE


def _is_current(path: Path) -> bool:
    try:
        return pq.read_schema(path).names == list(INDEX_SCHEMA)
    except (OSError, ValueError):
        return False


def earlier_indexes(paths: LakePaths, arrival: date) -> list[Path]:
    """The index of every silver events partition before `arrival`, oldest first; a partition
    without a current one (written before it existed) gets it built from its parts now."""
    indexes = []
    for day in paths.existing_partitions("silver", "events"):
        if day >= arrival.isoformat():
            continue
        path = index_path(paths, day)
        if not _is_current(path):
            parts = paths.partition_parts("silver", "events", day)
            write_index(pl.read_parquet(parts), path)
        indexes.append(path)
    return indexes


def prior_rows(paths: LakePaths, arrival: date, ids: pl.Series) -> pl.DataFrame:
    """Index rows of partitions before `arrival` whose event_id is among `ids`, earliest first:
    event_id, content fingerprint, and the original's arrival date, file and line."""
    found = []
    wanted_ids = ids.drop_nulls().unique()
    if wanted_ids.len():
        wanted = np.sort(fingerprints(wanted_ids).to_numpy())
        bitmap = np.zeros(1 << PREFIX_BITS, dtype=bool)
        bitmap[wanted >> np.uint64(64 - PREFIX_BITS)] = True
        indexes = earlier_indexes(paths, arrival)
        # numpy and pyarrow release the GIL: probe the days' files on every core
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            groups = list(pool.map(lambda p: _matching_row_groups(p, wanted, bitmap), indexes))
        for path, matched in zip(indexes, groups):
            if matched:
                rows = pl.from_arrow(pq.ParquetFile(path).read_row_groups(matched))
                found.append(rows.filter(pl.col("event_id").is_in(wanted_ids.implode())))
    frame = pl.concat(found) if found else pl.DataFrame(schema=INDEX_SCHEMA)
    return frame.cast(INDEX_SCHEMA).sort(["arrival_date", "_source_file", "_line"])


def _matching_row_groups(path: Path, wanted: np.ndarray, bitmap: np.ndarray) -> list[int]:
    file = pq.ParquetFile(path)
    hashes = file.read(columns=["h"]).column(0).to_numpy()
    maybe = np.flatnonzero(bitmap[hashes >> np.uint64(64 - PREFIX_BITS)])
    if maybe.size == 0:
        return []
    candidates = hashes[maybe]
    at = np.minimum(np.searchsorted(wanted, candidates), wanted.size - 1)
    hits = maybe[wanted[at] == candidates]
    ends = np.cumsum([file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)])
    return sorted({int(g) for g in np.searchsorted(ends, hits, side="right")})
