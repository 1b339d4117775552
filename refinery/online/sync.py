"""Apply gold as-of dates to an online store: the latest vector of every user whose record changed.

For each as-of date of the run, in order, the mart's rows become records (`records.encode_records`);
a user's record is written when it is new, or its as-of date is newer than the stored one, or the
same as-of date now has different bytes (gold was recomputed). A stored record newer than the
date being applied is never overwritten (a rerun of an old partition cannot move a user back in
time), and a record whose bytes equal the stored ones is not written again (reruns write
nothing). All writes of the run, and the store's meta, go in one store transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from refinery.online.records import encode_records, feature_schema, mart_path
from refinery.online.store import OnlineStore, Record


@dataclass
class SyncStats:
    as_of_dates: list[str] = field(default_factory=list)
    missing_dates: list[str] = field(default_factory=list)
    rows_read: int = 0
    users_written: int = 0
    users_new: int = 0
    users_changed: int = 0  # values differ from the stored vector (new users included)
    users_unchanged: int = 0  # same bytes as stored: not written
    users_skipped_newer: int = 0  # store already holds a newer as-of date
    watermark: str | None = None
    written_users: list[str] = field(default_factory=list)


def _features_part(body: bytes) -> bytes:
    """The `features` object of a body (bytes after the key); equal iff the values are equal."""
    return body[body.index(b'"features":') :]


def sync_dates(
    store: OnlineStore, gold_dir: Path, as_of_dates: list[date], version: str | None
) -> SyncStats:
    stats = SyncStats()
    pending: dict[str, Record] = {}
    stored_bodies: dict[str, bytes] = {}
    schema = None
    for day in sorted(as_of_dates):
        path = mart_path(gold_dir, day)
        if not path.exists():
            stats.missing_dates.append(day.isoformat())  # no active user that day
            continue
        frame = pl.read_parquet(path)
        schema = frame.schema
        stats.as_of_dates.append(day.isoformat())
        stats.rows_read += frame.height
        records = encode_records(frame, version)
        unseen = [r[0] for r in records if r[0] not in pending]
        stored = store.current(unseen)
        for record in records:
            user, as_of, digest, body = record
            earlier = pending.get(user)
            before = (earlier[1], earlier[2]) if earlier else stored.get(user)
            if before is not None:
                if before[0] > as_of:
                    stats.users_skipped_newer += 1
                    continue
                if before == (as_of, digest):
                    stats.users_unchanged += 1
                    continue
            pending[user] = record
    if pending:
        # what the store held before this run, to count changed values (not only newer dates)
        previous = store.get_many(list(pending))
        stored_bodies = {u: p[1] for u, p in zip(pending, previous, strict=True) if p is not None}
    for user, (_, _, _, body) in pending.items():
        old = stored_bodies.get(user)
        if old is None:
            stats.users_new += 1
            stats.users_changed += 1
        elif _features_part(old) != _features_part(body):
            stats.users_changed += 1
    old_meta = store.meta()
    newest = max(stats.as_of_dates, default=None)
    watermark = max(filter(None, [old_meta.get("watermark"), newest]), default=None)
    meta: dict[str, str] = {}
    if watermark is not None:
        meta["watermark"] = watermark
    if schema is not None:
        meta["schema"] = json.dumps(feature_schema(schema))
        meta["updated_at"] = datetime.now(UTC).isoformat()
        meta["training_set_version"] = version or ""
    if pending or meta != {k: old_meta.get(k) for k in meta}:
        store.write(list(pending.values()), meta)
    stats.users_written = len(pending)
    stats.written_users = sorted(pending)
    stats.watermark = watermark
    return stats
