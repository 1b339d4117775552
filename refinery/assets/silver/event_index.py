"""Which of a day's event_ids silver already holds, over all of history.

Silver deduplicates a day's events against every earlier partition, not a look-back window: a
re-delivery a year later must not double-count. `prior_rows` answers it through a compact index
kept beside silver (`lake/.index/silver-events/`), and keeps the straight scan of every earlier
partition (`scan_prior_rows`) as the reference and the fallback.

The index is a small LSM: immutable sorted runs of fingerprints (`<run>.fp.npy`, uint64, memory
mapped) with, for each entry, where the row lives (`<run>.loc.npy`: partition day, part number,
row number packed into a uint64). Each indexed partition is added as one new run; runs are merged
tier by tier (FANOUT runs of a tier make one of the next, none larger than MAX_MERGED_ENTRIES),
so adding a day costs O(day · log history) amortised and a lookup probes only a handful of runs
whatever the history length. The fingerprint is a stable FNV-1a-64 of the id's UTF-8 bytes with
a splitmix64 finish, computed vectorised over the Arrow buffers (no per-id Python).

A hit is confirmed from the part's row sidecar (`rows/<day>/part-<n>.<token>.rows`,
`event_index_rows`): the part's rows in every contract column, row-aligned, in zstd-compressed
blocks of 64 rows. Only the blocks holding a hit are decompressed (each once), all of them in
one decode, and the rows are kept only if their event_id is exactly a wanted one, so the cost
follows the number of hits, not the number of partitions holding them, and a 64-bit collision
costs a block read, never an event or a label. The result is the straight scan's: the same
columns (a column a part lacks is null), the same rows, the same order.

The index is derived state, never a source of truth. `manifest.json` (written last, temp file +
os.replace) records for each indexed partition its parts' (name, size, mtime_ns, inode), the run
holding its entries, and its parts' sidecars and row counts. A partition whose parts differ (a
backfill rewrote it), that the manifest does not know, or whose run is missing or unreadable is
scanned straight instead; a part whose sidecar is missing, truncated, of another contract schema
or fails a block CRC is read the old way (its whole Parquet part, exact filter), and the next
`refresh` re-indexes or rewrites what is stale (a CRC-failing sidecar is deleted by the lookup
that finds it). A SIGKILL anywhere in `refresh` (kill points `index.*`) leaves the previous
manifest, or the new one with all its runs and sidecars in place; orphaned run and sidecar files
are deleted by the next refresh. Only partitions before `arrival` count as history, whatever else
the index holds.

Storage at 1M events a day (bench/bench_event_index.py, docs/BENCHMARKS.md): 16 bytes an event
of runs and about 25 of sidecars (the synthetic bench data; real rows compress less), against
silver's own Parquet bytes an event.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from refinery.assets.silver import event_index_rows as rows_io
from refinery.contracts.silver import EVENTS
from refinery.faults import kill_point
from refinery.resources.lake import LakePaths, part_signature

INDEX_VERSION = 1
HASH_NAME = "fnv1a64-splitmix-v1"
FANOUT = 4
# No merge makes a run larger than this (64M entries: 16 days at 1M events a day, ~1 GB of
# fingerprints and locations): the worst merge of a year at 1M/day would otherwise rewrite 256M
# entries (measured 80 s, ~6 GB held) inside one silver run. Runs at the cap stay side by side;
# a lookup probes each (a year at 1M/day: about 6 of them plus the lower tiers).
MAX_MERGED_ENTRIES = 64_000_000
# Indexed partitions whose sidecars are rewritten in one refresh (about 2 s each at 1M rows).
SIDECAR_REPAIRS = 16
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_DAY_SHIFT, _PART_SHIFT = np.uint64(40), np.uint64(28)
_ROW_MASK, _PART_MASK = (1 << 28) - 1, (1 << 12) - 1

HashFn = Callable[[pl.Series], np.ndarray]


def fingerprints(ids: pl.Series) -> np.ndarray:
    """Stable 64-bit fingerprints of non-null string ids (same id, same value, any version)."""
    arr = ids.cast(pl.String).rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_binary())
    n = len(arr)
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    starts, lens = offsets[:-1][order], lengths[order]
    neg = -lens
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    for j in range(int(lens[0]) if n else 0):
        k = int(np.searchsorted(neg, -j, side="left"))  # ids longer than j bytes
        h[:k] ^= data[starts[:k] + j].astype(np.uint64)
        h[:k] *= _FNV_PRIME
    h ^= lens.astype(np.uint64)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    out = np.empty(n, dtype=np.uint64)
    out[order] = h
    return out


# -- the reference -------------------------------------------------------------------------------


def _schema() -> dict:
    return {c.name: c.dtype for c in EVENTS.columns}


def _read_matching(parts: list, wanted: pl.Series) -> pl.DataFrame:
    # Read as the contract's columns: a partition written before a column was added (or after
    # one was dropped) still scans with the rest.
    if not parts:
        return pl.DataFrame(schema=_schema())
    return (
        pl.scan_parquet(parts, schema=_schema(), missing_columns="insert", extra_columns="ignore")
        .filter(pl.col("event_id").is_in(wanted.implode()))
        .collect()
        .sort(["arrival_date", "_source_file", "_line"], maintain_order=True)
    )


def _scan_part(part: Path) -> pl.LazyFrame:
    """One silver part as the contract's columns, as the straight scan reads it."""
    return pl.scan_parquet(part, schema=_schema(), missing_columns="insert", extra_columns="ignore")


def earlier_parts(paths: LakePaths, arrival: date) -> list:
    """The Parquet parts of every silver events partition before `arrival`, oldest first."""
    return [
        part
        for day in paths.existing_partitions("silver", "events")
        if day < arrival.isoformat()
        for part in paths.partition_parts("silver", "events", day)
    ]


def scan_prior_rows(paths: LakePaths, arrival: date, ids: pl.Series) -> pl.DataFrame:
    """The straight scan of every earlier partition: the reference the index must equal."""
    wanted = ids.drop_nulls().unique()
    if wanted.len() == 0:
        return pl.DataFrame(schema=_schema())
    return _read_matching(earlier_parts(paths, arrival), wanted)


# -- index files ---------------------------------------------------------------------------------


def index_dir(paths: LakePaths) -> Path:
    return paths.lake / ".index" / "silver-events"


def _current(paths: LakePaths, days: list[str]) -> dict[str, tuple[list[Path], list]]:
    out = {}
    for day in days:
        parts = paths.partition_parts("silver", "events", day)
        with contextlib.suppress(OSError):  # a partition swapped meanwhile: left unindexed
            out[day] = (parts, part_signature(parts))
    return out


def _empty_manifest() -> dict:
    return {"version": INDEX_VERSION, "hash": HASH_NAME, "runs": {}, "partitions": {}}


def load_manifest(paths: LakePaths, hash_name: str = HASH_NAME) -> dict:
    """The manifest, or an empty one if it is missing, unreadable or of another version/hash."""
    try:
        m = json.loads((index_dir(paths) / "manifest.json").read_text())
        if (
            m.get("version") == INDEX_VERSION
            and m.get("hash") == hash_name
            and isinstance(m.get("runs"), dict)
            and isinstance(m.get("partitions"), dict)
        ):
            return m
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return _empty_manifest()


def _open_run(root: Path, name: str, entries: int):
    """A run's (fingerprints, locations), memory mapped, or None if missing or not as recorded."""
    try:
        fp = np.load(root / f"{name}.fp.npy", mmap_mode="r")
        loc = np.load(root / f"{name}.loc.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (
        fp.dtype != np.uint64
        or loc.dtype != np.uint64
        or fp.shape != (entries,)
        or loc.shape != (entries,)
    ):
        return None
    return fp, loc


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_taken(path: Path, array: np.ndarray, order: np.ndarray) -> None:
    """`array[order]` as a .npy file, written through a memory map (no second copy in RAM)."""
    if len(order) == 0:
        _save_npy(path, array[order])
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint64, shape=(len(order),))
        for i in range(0, len(order), 1 << 24):
            np.take(array, order[i : i + (1 << 24)], out=out[i : i + (1 << 24)])
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_run(root: Path, fp: np.ndarray, loc: np.ndarray) -> str:
    order = np.argsort(fp, kind="stable")  # timsort: concatenated sorted runs merge in O(n log k)
    name = f"run-{uuid.uuid4().hex}"
    _save_taken(root / f"{name}.fp.npy", fp, order)
    kill_point("index.between_run_files")
    _save_taken(root / f"{name}.loc.npy", loc, order)
    return name


def _save_manifest(root: Path, manifest: dict) -> None:
    tmp = root / f".manifest.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(json.dumps(manifest))
        kill_point("index.before_manifest")
        os.replace(tmp, root / "manifest.json")
    finally:
        tmp.unlink(missing_ok=True)


def _pack(day: str, part: int, rows: int) -> np.ndarray:
    base = (date.fromisoformat(day).toordinal() << 40) | (part << 28)
    return np.uint64(base) + np.arange(rows, dtype=np.uint64)


def _packable(parts: list[Path]) -> bool:
    """Part numbers and row counts fit the packed location (else the day stays scanned)."""
    return all(int(p.stem.removeprefix("part-")) <= _PART_MASK for p in parts) and all(
        pq_rows(p) <= _ROW_MASK for p in parts
    )


def pq_rows(path: Path) -> int:
    return pl.scan_parquet(path).select(pl.len()).collect().item()


def _days_of(loc: np.ndarray) -> np.ndarray:
    return (loc >> _DAY_SHIFT).astype(np.int64)


# -- update --------------------------------------------------------------------------------------


def refresh(paths: LakePaths, hash_fn: HashFn = fingerprints, hash_name: str = HASH_NAME) -> dict:
    """Bring the index up to silver: index every partition that is new or rewritten (or whose
    run is gone), forget removed ones, merge runs tier by tier. Returns what it did."""
    root = index_dir(paths)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        m = load_manifest(paths, hash_name)
        runs = {n: r for n, r in m["runs"].items() if _open_run(root, n, r["entries"]) is not None}
        current = _current(paths, paths.existing_partitions("silver", "events"))
        kept = {
            d: e
            for d, e in m["partitions"].items()
            if d in current and e["sig"] == current[d][1] and e["run"] in runs
        }
        new_days = [d for d in current if d not in kept and _packable(current[d][0])]
        header = rows_io.schema_message(_schema())
        # indexed days whose sidecars are missing, unreadable or of an older contract
        # (newest first, at most SIDECAR_REPAIRS a refresh: a lake indexed before sidecars
        # existed gets them over several silver runs, its lookups exact meanwhile)
        repair = sorted(
            (d for d, e in kept.items() if not _sidecars_ok(root, e, header)), reverse=True
        )[:SIDECAR_REPAIRS]
        stats = {"indexed": new_days, "merged": 0, "sidecars": repair}
        for day in repair:
            sidecars, _ = _write_sidecars(root, day, current[day][0])
            kept[day] = {**kept[day], **sidecars}
        if new_days:
            fps, locs, added = [], [], {}
            for day in new_days:
                added[day], frames = _write_sidecars(root, day, current[day][0])
                for part, ids in frames:
                    locs.append(
                        _pack(day, int(part.stem.removeprefix("part-")), ids.len())[
                            ids.is_not_null().to_numpy()
                        ]
                    )
                    fps.append(hash_fn(ids.drop_nulls()))
                del frames
            kill_point("index.after_sidecars")
            name = _write_run(
                root,
                np.concatenate(fps) if fps else np.zeros(0, np.uint64),
                np.concatenate(locs) if locs else np.zeros(0, np.uint64),
            )
            runs[name] = {"tier": 0, "entries": int(sum(len(f) for f in fps))}
            for day in new_days:
                kept[day] = {"sig": current[day][1], "run": name, **added[day]}
        kill_point("index.after_add")
        # runs no partition points at any more hold only stale entries
        live = {e["run"] for e in kept.values()}
        runs = {n: r for n, r in runs.items() if n in live}
        tier = 0
        while True:
            same = sorted(n for n, r in runs.items() if r["tier"] == tier)
            if not same and tier > max((r["tier"] for r in runs.values()), default=0):
                break
            capped = sum(runs[n]["entries"] for n in same[:FANOUT]) > MAX_MERGED_ENTRIES
            if len(same) >= FANOUT and not capped:
                name, entries = _merge(root, same, runs, kept)
                for n in same:
                    del runs[n]
                runs[name] = {"tier": tier + 1, "entries": entries}
                for e in kept.values():
                    if e["run"] in same:
                        e["run"] = name
                stats["merged"] += len(same)
                kill_point("index.after_merge")
            tier += 1
        _save_manifest(
            root, {"version": INDEX_VERSION, "hash": hash_name, "runs": runs, "partitions": kept}
        )
        kill_point("index.after_manifest")
        for f in root.iterdir():  # orphans: runs of a killed or superseded update
            if (f.name.startswith("run-") and f.name.split(".")[0] not in runs) or (
                f.name.startswith((".run-", ".manifest.")) and f.name.endswith(".tmp")
            ):
                f.unlink(missing_ok=True)
        _delete_orphan_sidecars(root, kept)
        return stats


def _sidecar_name(day: str, part: Path) -> str:
    return f"rows/{day}/{part.stem}.{uuid.uuid4().hex[:12]}.rows"


def _write_sidecars(root: Path, day: str, parts: list[Path]) -> tuple[dict, list]:
    """Write the sidecar of each part of a day; returns the manifest fields naming them and
    each part's event_id column (read once for both)."""
    names, counts, frames = [], [], []
    for part in parts:
        frame = _scan_part(part).collect()
        name = _sidecar_name(day, part)
        rows_io.write_rows(root / name, frame, _schema())
        kill_point("index.between_sidecars")
        names.append(name)
        counts.append(frame.height)
        frames.append((part, frame.get_column("event_id")))
        del frame
    return {"rows": names, "part_rows": counts}, frames


def _open_sidecar(root: Path, entry: dict, i: int, header: bytes) -> rows_io.Sidecar:
    names, counts = entry.get("rows"), entry.get("part_rows")
    if not isinstance(names, list) or not isinstance(counts, list) or i >= len(names):
        raise rows_io.SidecarError("no sidecar recorded")
    if len(names) != len(counts) or not isinstance(names[i], str) or "/../" in names[i]:
        raise rows_io.SidecarError("a bad sidecar entry")
    return rows_io.Sidecar(root / names[i], header, counts[i])


def _sidecars_ok(root: Path, entry: dict, header: bytes) -> bool:
    """Every part of an indexed partition has a sidecar that opens (trailer, schema, rows)."""
    parts = len(entry.get("sig", []))
    try:
        for i in range(parts):
            _open_sidecar(root, entry, i, header)
    except rows_io.SidecarError:
        return False
    return len(entry.get("rows", [])) == parts


def _delete_orphan_sidecars(root: Path, kept: dict) -> None:
    """Sidecars no partition of the manifest names (a killed or superseded update), temp files."""
    base = root / "rows"
    if not base.is_dir():
        return
    named = {n for e in kept.values() for n in e.get("rows", []) if isinstance(n, str)}
    for day_dir in base.iterdir():
        if not day_dir.is_dir():
            day_dir.unlink(missing_ok=True)
            continue
        for f in day_dir.iterdir():
            if f"rows/{day_dir.name}/{f.name}" not in named:
                f.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: still in use
            day_dir.rmdir()


def _merge(root: Path, names: list[str], runs: dict, kept: dict) -> tuple[str, int]:
    """One run from several, without entries of partitions that now live in another run."""
    fps, locs = [], []
    for n in names:
        # only the entries of partitions this run holds for the manifest: a partition re-indexed
        # since (a backfill) left stale entries here, and its new run may be merged alongside
        ordinals = np.array(
            sorted(date.fromisoformat(d).toordinal() for d, e in kept.items() if e["run"] == n),
            dtype=np.int64,
        )
        fp, loc = _open_run(root, n, runs[n]["entries"])
        keep = np.isin(_days_of(loc), ordinals)
        whole = bool(keep.all())  # the usual case: concatenated straight from the memory maps
        fps.append(fp if whole else np.asarray(fp)[keep])
        locs.append(loc if whole else np.asarray(loc)[keep])
        del keep
    fp, loc = np.concatenate(fps), np.concatenate(locs)
    return _write_run(root, fp, loc), len(fp)


# -- lookup --------------------------------------------------------------------------------------


def prior_rows(
    paths: LakePaths,
    arrival: date,
    ids: pl.Series,
    hash_fn: HashFn = fingerprints,
    hash_name: str = HASH_NAME,
    update: bool = True,
) -> pl.DataFrame:
    """Silver rows of partitions before `arrival` whose event_id is among `ids`, earliest first.

    Equal to `scan_prior_rows` always: the index only narrows which parts are read. With
    `update`, the index is first brought up to silver (`refresh`: the committed partitions it
    does not hold yet are added), so silver keeps it current without a second call."""
    if update:
        try:
            refresh(paths, hash_fn, hash_name)
        except OSError:  # a read-only or full lake: the lookup below scans what is unindexed
            pass
    wanted = ids.drop_nulls().unique()
    if wanted.len() == 0:
        return pl.DataFrame(schema=_schema())
    days = [d for d in paths.existing_partitions("silver", "events") if d < arrival.isoformat()]
    if not days:
        return pl.DataFrame(schema=_schema())
    root = index_dir(paths)
    m = load_manifest(paths, hash_name)
    current = _current(paths, days)
    fresh = {
        d for d in current if d in m["partitions"] and m["partitions"][d]["sig"] == current[d][1]
    }
    h = hash_fn(wanted)
    order = np.argsort(h)
    q = h[order]
    del h
    hits = []  # packed locations of fingerprint hits, only in the run holding their partition
    any_hit = np.zeros(len(q), dtype=bool)  # which of the sorted fingerprints hit some run
    for name in {m["partitions"][d]["run"] for d in fresh}:
        run = _open_run(root, name, m["runs"].get(name, {}).get("entries", -1))
        if run is None:
            fresh -= {d for d in fresh if m["partitions"][d]["run"] == name}
            continue
        fp, loc = run
        lo = np.searchsorted(fp, q, side="left")
        hit = lo < len(fp)
        hit[hit] = fp[lo[hit]] == q[hit]
        if not hit.any():
            continue
        any_hit |= hit
        lo = lo[hit]
        hi = np.searchsorted(fp, q[hit], side="right")
        counts = hi - lo
        idx = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        found = np.asarray(loc[np.sort(idx)])
        owned = np.array(
            sorted(
                date.fromisoformat(d).toordinal()
                for d in fresh
                if m["partitions"][d]["run"] == name
            ),
            dtype=np.int64,
        )
        hits.append(found[np.isin(_days_of(found), owned)])
    found = np.unique(np.concatenate(hits)) if hits else np.zeros(0, np.uint64)
    # found is sorted by (day, part, row): split it by part
    part_key = (found >> _PART_SHIFT).astype(np.int64)  # day ordinal and part number
    keys, starts = np.unique(part_key, return_index=True)
    ends = np.append(starts[1:], len(found)).astype(np.int64)
    by_part = {
        int(k): (found[s:e] & np.uint64(_ROW_MASK)).astype(np.int64)
        for k, s, e in zip(keys.tolist(), starts.tolist(), ends.tolist())
    }
    header = rows_io.schema_message(_schema())
    fallback: list[tuple[int, int, Path]] = []  # (day ordinal, part number, part) read whole
    reads: list[tuple[int, int, Path, rows_io.Sidecar, np.ndarray]] = []
    for day in days:
        ordinal = date.fromisoformat(day).toordinal()
        if day not in current or day not in fresh:
            for p in (
                current[day][0]
                if day in current
                else paths.partition_parts("silver", "events", day)
            ):
                fallback.append((ordinal, _part_no(p), p))
            continue
        for i, p in enumerate(current[day][0]):
            rows = by_part.get((ordinal << 12) | _part_no(p))
            if rows is None:
                continue
            try:
                reads.append(
                    (
                        ordinal,
                        _part_no(p),
                        p,
                        _open_sidecar(root, m["partitions"][day], i, header),
                        rows,
                    )
                )
            except rows_io.SidecarError:
                fallback.append((ordinal, _part_no(p), p))
    # A row reached through a hit has the fingerprint of its id: if that id is wanted, it is
    # among the wanted ids whose fingerprint hit, so the exact filter needs only those.
    candidates = wanted.gather(order[any_hit])
    frames, failed = _read_sidecars(reads, candidates)
    fallback += failed
    frames.append(_read_parts(fallback, wanted))
    return (
        pl.concat(frames)
        .sort(["_o_day", "_o_part", "_o_row"])
        .drop("_o_day", "_o_part", "_o_row")
        .sort(["arrival_date", "_source_file", "_line"], maintain_order=True)
    )


def _part_no(part: Path) -> int:
    return int(part.stem.removeprefix("part-"))


_ORDER = {"_o_day": pl.Int64, "_o_part": pl.Int64, "_o_row": pl.Int64}


def _read_sidecars(reads: list, wanted: pl.Series) -> tuple[list, list]:
    """The hit rows of each (part, sidecar, rows), decoded in groups of blocks of one layout (the
    same blocks' schema and constant columns), the constants of each part put back beside its
    rows, filtered by exact event_id; the parts whose sidecar failed go back to be read whole."""
    frames, failed = [], []
    group, packed, raw, counts, takes, keys, base, layout = [], [], 0, [], [], [], 0, None

    def flush():
        nonlocal group, packed, raw, counts, takes, keys, base, layout
        if group:
            try:
                block_header, _ = layout
                table = rows_io.decode(block_header, packed, raw, counts, np.concatenate(takes))
                d, p, r = (np.concatenate(k) for k in zip(*keys))
                # each part's one-row constants, repeated for its rows (in the order decoded)
                constants = pa.concat_tables([sidecar.constants for *_, sidecar in group]).take(
                    pa.array(np.repeat(np.arange(len(group)), [len(k[2]) for k in keys]))
                )
                for name in constants.column_names:
                    table = table.append_column(name, constants.column(name))
                frame = (
                    pl.from_arrow(table.select(list(_schema())))
                    .cast(_schema())
                    .with_columns(
                        _o_day=pl.Series(d, dtype=pl.Int64),
                        _o_part=pl.Series(p, dtype=pl.Int64),
                        _o_row=pl.Series(r, dtype=pl.Int64),
                    )
                )
                frames.append(frame.filter(pl.col("event_id").is_in(wanted.implode())))
            except (rows_io.SidecarError, pa.ArrowException, KeyError):
                # (KeyError: blocks and constants that do not hold every contract column)
                failed.extend((o, n, part) for o, n, part, _ in group)
        group, packed, raw, counts, takes, keys, base, layout = [], [], 0, [], [], [], 0, None

    for ordinal, number, part, sidecar, rows in reads:
        try:
            blocks, size, pos, cnts = sidecar.blocks(rows)
        except rows_io.SidecarError as exc:
            failed.append((ordinal, number, part))
            if isinstance(exc, rows_io.SidecarCorrupt):
                # drop the file (its name is unique to that write): the next refresh writes it
                with contextlib.suppress(OSError):
                    sidecar.path.unlink()
            continue
        shape = (sidecar.block_header, sidecar.constants.schema.serialize().to_pybytes())
        if layout is not None and shape != layout:
            flush()
        layout = shape
        group.append((ordinal, number, part, sidecar))
        packed += blocks
        raw += size
        counts += cnts
        takes.append(pos + base)
        base += sum(cnts)
        keys.append(
            (np.full(len(rows), ordinal, np.int64), np.full(len(rows), number, np.int64), rows)
        )
        if len(packed) >= rows_io.DECODE_GROUP:
            flush()
    flush()
    return frames, failed


def _read_parts(parts: list[tuple[int, int, Path]], wanted: pl.Series) -> pl.DataFrame:
    """Parts read the old way (the whole part, exact event_id filter), with their order keys."""
    if not parts:
        return pl.DataFrame(schema={**_schema(), **_ORDER})
    return pl.concat(
        [
            _scan_part(part)
            .with_row_index("_o_row")
            .filter(pl.col("event_id").is_in(wanted.implode()))
            .with_columns(_o_day=pl.lit(ordinal), _o_part=pl.lit(number))
            .select(*_schema(), *_ORDER)
            .cast(_ORDER)
            for ordinal, number, part in parts
        ]
    ).collect()
