"""Writing event files: rendered lines streamed to disk (plain or gzip), faults spliced in.

Rendering runs a few chunks ahead in worker threads (numpy releases the GIL for the heavy
passes) while this thread writes, so a 10M-event day stays within a couple of cores.
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from collections import deque
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from refinery.synth.event_lines import render_events
from refinery.synth.faults import FAULT_KINDS, PlannedFault, faulty_line
from refinery.synth.sessions import LATE, REDELIVERED, EventBatch

RENDER_CHUNK_ROWS = 131_072
GZIP_LEVEL = 1  # fast: the generator should not spend a minute per day compressing


# gzip member header: deflate, no flags, mtime 0, no extra flags, OS unknown (bytes never
# depend on when or where they were written)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_DEFLATE_WINDOW = 32_768


def _deflate_piece(data: bytes, dictionary: bytes) -> bytes:
    """Raw deflate of one piece, byte-aligned at its end so pieces concatenate (as pigz does)."""
    if dictionary:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15, zdict=dictionary)
    else:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _gzip_trailer(crc: int, size: int) -> bytes:
    final_block = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    return final_block + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)


class _Sink:
    """A file that takes bytes chunk by chunk, gzip-compressing chunks in parallel when asked.

    A gzip file is one deflate stream: each chunk is deflated on its own (primed with the
    previous chunk's last 32 KiB, so the ratio barely suffers), ends byte-aligned, and the
    pieces are written in order; one empty final block and the CRC close the stream.
    """

    def __init__(self, path: Path, gzip: bool, pool: Executor | None):
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close(), after the last chunk
        self.gzip = gzip
        self.pool = pool
        self.pieces: list = []
        self.pending: deque = deque()
        self.crc = 0
        self.size = 0
        self.dictionary = b""
        if gzip:
            self.file.write(_GZIP_HEADER)

    def write(self, data) -> None:
        if len(data) == 0:
            return
        if self.gzip:
            self.pieces.append(data)
        else:
            self.file.write(data)

    def end_chunk(self) -> None:
        if not self.gzip or not self.pieces:
            return
        data = b"".join(self.pieces)
        self.pieces = []
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        if self.pool is None:
            self.file.write(_deflate_piece(data, self.dictionary))
        else:
            self.pending.append(self.pool.submit(_deflate_piece, data, self.dictionary))
            while len(self.pending) > 2:
                self.file.write(self.pending.popleft().result())
        self.dictionary = data[-_DEFLATE_WINDOW:]

    def close(self) -> None:
        try:
            self.end_chunk()
            while self.pending:
                self.file.write(self.pending.popleft().result())
            if self.gzip:
                self.file.write(_gzip_trailer(self.crc, self.size))
        finally:
            self.file.close()


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip of `data`, in the same form the writer produces."""
    return _GZIP_HEADER + _deflate_piece(data, b"") + _gzip_trailer(zlib.crc32(data), len(data))


def _rendered_chunks(chunks, start: dt.date, pool: Executor | None):
    """Yield (first row, chunk, rendered lines) per chunk, rendering up to 3 chunks ahead."""

    def numbered():
        first = 0
        for chunk in chunks:
            yield first, chunk
            first += len(chunk)

    if pool is None:
        for first, chunk in numbered():
            yield first, chunk, render_events(chunk, start)
        return
    pending: deque = deque()
    for first, chunk in numbered():
        pending.append((first, chunk, pool.submit(render_events, chunk, start)))
        if len(pending) > 3:
            first, chunk, future = pending.popleft()
            yield first, chunk, future.result()
    while pending:
        first, chunk, future = pending.popleft()
        yield first, chunk, future.result()


def file_chunks(events: EventBatch):
    """`events` cut into the render chunks of one file (RENDER_CHUNK_ROWS rows each)."""
    for a in range(0, len(events), RENDER_CHUNK_ROWS):
        yield events.take(slice(a, min(a + RENDER_CHUNK_ROWS, len(events))))


def write_events_file(
    path: Path,
    gzip: bool,
    events: EventBatch,
    faults: dict[int, PlannedFault],
    start: dt.date,
    arrival_date: dt.date,
    pool: Executor | None = None,
) -> dict:
    """Write `events` (this file's rows, in order) with their faults; return its manifest.

    `faults` is keyed by row index within `events`. Line numbers in the manifest are 1-based,
    counted as a reader of the file would count them.
    """
    return write_event_chunks(path, gzip, file_chunks(events), faults, start, arrival_date, pool)


def write_event_chunks(
    path: Path,
    gzip: bool,
    chunks,
    faults: dict[int, PlannedFault],
    start: dt.date,
    arrival_date: dt.date,
    pool: Executor | None = None,
) -> dict:
    """`write_events_file` for a file whose rows come as consecutive chunks (EventBatches).

    The chunks are the render (and, for gzip, deflate) units, so the bytes are those of
    `write_events_file` only when they are cut as `file_chunks` cuts: RENDER_CHUNK_ROWS rows
    each, counted from the file's first row. Only the chunks being rendered are held.
    """
    fault_rows = np.array(sorted(faults), dtype=np.int64)
    lines_of: dict[str, list[int]] = {kind: [] for kind in FAULT_KINDS}
    sink = _Sink(path, gzip, pool)
    line_no = 0
    raw_bytes = 0
    redelivered_rows, redelivered_days, late_rows, late_days = [], [], [], []
    try:
        for first, chunk, lines in _rendered_chunks(chunks, start, pool):
            origin = chunk["origin"]
            for rows, days, which in (
                (redelivered_rows, redelivered_days, REDELIVERED),
                (late_rows, late_days, LATE),
            ):
                mine = np.flatnonzero(origin == which)
                rows.append(mine + first)
                days.append(chunk["event_day"][mine])
            lo, hi = np.searchsorted(fault_rows, [first, first + len(lines)])
            position = 0
            for row in fault_rows[lo:hi]:
                i = int(row) - first
                sink.write(lines.data[lines.offsets[position] : lines.offsets[i]])
                line_no += i - position
                fault = faults[int(row)]
                clean = lines.line(i)
                if fault.kind == "duplicate_line":
                    sink.write(clean)
                    line_no += 1
                    raw_bytes += len(clean)
                replacement = faulty_line(fault, clean, arrival_date)
                sink.write(replacement)
                line_no += 1
                raw_bytes += len(replacement) - len(clean)
                lines_of[fault.kind].append(line_no)
                position = i + 1
            sink.write(lines.data[lines.offsets[position] :])
            sink.end_chunk()
            line_no += len(lines) - position
            raw_bytes += len(lines.data)
    finally:
        sink.close()

    # line numbers of re-delivered and late rows: row index + 1 + copies inserted before them
    duplicate_rows = np.array(
        sorted(r for r, f in faults.items() if f.kind == "duplicate_line"), dtype=np.int64
    )

    def line_numbers(rows: np.ndarray) -> list[int]:
        return (rows + 1 + np.searchsorted(duplicate_rows, rows, side="left")).tolist()

    def joined(pieces: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate([np.zeros(0, dtype=dtype), *pieces])

    redelivered = joined(redelivered_rows, np.int64)
    late = joined(late_rows, np.int64)

    def by_event_date(event_days: np.ndarray) -> dict[str, int]:
        days, counts = np.unique(event_days, return_counts=True)
        return {
            (start + dt.timedelta(days=int(d))).isoformat(): int(c) for d, c in zip(days, counts)
        }

    return {
        "file": path.name,
        "compression": "gzip" if gzip else "none",
        "lines": line_no,
        "uncompressed_bytes": raw_bytes,
        "bytes": path.stat().st_size,
        "faults": {kind: {"count": len(lines), "lines": lines} for kind, lines in lines_of.items()},
        "redelivered": {
            "count": len(redelivered),
            "lines": line_numbers(redelivered),
            "by_event_date": by_event_date(joined(redelivered_days, np.int32)),
        },
        "late": {"count": len(late), "by_event_date": by_event_date(joined(late_days, np.int32))},
    }
