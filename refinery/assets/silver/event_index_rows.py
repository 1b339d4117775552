"""Row sidecars of the event-id index: a silver part's rows, readable a few at a time.

A fingerprint hit names (day, part, row). Reading that row from the silver Parquet part means
decoding the whole 512k-row group it sits in, so hits spread over all of history cost a read of
every partition. A sidecar holds the same rows (every silver contract column, as the straight
scan reads them: a column the part lacks is null), row-aligned with the part, in blocks of
BATCH_ROWS rows, each block one Arrow IPC record-batch message compressed whole as one zstd
frame with a CRC-32 of the compressed bytes. A lookup decompresses only the blocks holding a
hit (each block once, however many hits it holds) and decodes all of them in one Arrow call, so
its cost follows the number of hits, not the number of partitions holding them.

Why not an Arrow IPC file with buffer compression read by `get_batch`: measured on a 1M-row
part, each `get_batch` + `take` cost 250-1000 µs (Arrow compresses each of the ~40 buffers of a
batch separately, and every call crosses into Python); one zstd frame per block decompressed
into a stream decoded by one `read_all` costs ~60-90 µs a block, at the same size on disk.

File layout (little-endian): MAGIC | schema message | block 0 … block k-1 | offsets (uint64,
k+1: file offsets of the blocks and the end of the last) | raw sizes (uint64, k) | CRC-32 of
each compressed block (uint64, k) | trailer (schema length, k, rows, batch rows, MAGIC). The
schema message is the contract's Arrow schema serialised: a sidecar whose schema bytes differ
from the current contract's (a column added since) is unknown, never read. Anything that does not
check out (size, magic, CRC, a block that does not decode to its row count) raises
`SidecarError`, and the caller reads that silver part the old way.
"""

from __future__ import annotations

import mmap
import os
import struct
import uuid
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from pyarrow import ipc

from refinery.faults import kill_point

MAGIC = b"RFYROWS1"
BATCH_ROWS = 64
CODEC = "zstd"
_TRAILER = struct.Struct("<QQQQ8s")
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
# blocks decoded in one Arrow call (bounds the memory of one decode: 4096 x 128 rows)
DECODE_GROUP = 4096


class SidecarError(Exception):
    """A sidecar that is missing, of another schema, truncated or corrupt."""


class SidecarCorrupt(SidecarError):
    """A block that fails its CRC: the file is damaged."""


def arrow_schema(schema: dict) -> pa.Schema:
    return pl.DataFrame(schema=schema).to_arrow().schema


def schema_message(schema: dict) -> bytes:
    return arrow_schema(schema).serialize().to_pybytes()


def write_rows(path: Path, frame: pl.DataFrame, schema: dict, batch_rows: int = BATCH_ROWS) -> int:
    """Write `frame` (already in the contract's columns) as a sidecar at `path` (temp file +
    os.replace). Returns its size in bytes."""
    header = schema_message(schema)
    table = frame.select(list(schema)).cast(schema).to_arrow()
    if table.schema.serialize().to_pybytes() != header:
        table = table.cast(arrow_schema(schema))
    table = table.combine_chunks()
    codec = pa.Codec(CODEC)
    offsets, sizes, crcs = [], [], []
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as out:
            out.write(MAGIC)
            out.write(header)
            at = len(MAGIC) + len(header)
            for start in range(0, table.num_rows, batch_rows):
                batches = table.slice(start, batch_rows).to_batches()
                batch = (
                    batches[0]
                    if len(batches) == 1
                    else pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
                )
                message = batch.serialize()
                packed = codec.compress(message, asbytes=True)
                offsets.append(at)
                sizes.append(message.size)
                crcs.append(zlib.crc32(packed))
                out.write(packed)
                at += len(packed)
            offsets.append(at)
            out.write(np.asarray(offsets, dtype="<u8").tobytes())
            out.write(np.asarray(sizes, dtype="<u8").tobytes())
            out.write(np.asarray(crcs, dtype="<u8").tobytes())
            out.write(_TRAILER.pack(len(header), len(sizes), table.num_rows, batch_rows, MAGIC))
        kill_point("index.sidecar_written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


class Sidecar:
    """An open sidecar (memory mapped); `blocks(rows)` gives what `decode` needs for those rows."""

    def __init__(self, path: Path, header: bytes, rows: int | None = None):
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < len(MAGIC) + _TRAILER.size:
                    raise SidecarError(f"{path}: truncated")
                mv = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        except (OSError, ValueError) as exc:
            raise SidecarError(f"{path}: {exc}") from exc
        schema_len, k, n, batch_rows, magic = _TRAILER.unpack(mv[size - _TRAILER.size :])
        footer = size - _TRAILER.size - 8 * (3 * k + 1)
        if (
            magic != MAGIC
            or mv[: len(MAGIC)] != MAGIC
            or batch_rows < 1
            or k != -(-n // batch_rows)
            or footer < len(MAGIC) + schema_len
        ):
            raise SidecarError(f"{path}: not a sidecar")
        if mv[len(MAGIC) : len(MAGIC) + schema_len] != header:
            raise SidecarError(f"{path}: another schema")
        if rows is not None and n != rows:
            raise SidecarError(f"{path}: {n} rows, the part has {rows}")
        tables = np.frombuffer(mv[footer : footer + 8 * (3 * k + 1)], dtype="<u8")
        offsets = tables[: k + 1].astype(np.int64)
        if (
            offsets[0] != len(MAGIC) + schema_len
            or offsets[-1] != footer
            or np.any(np.diff(offsets) < 0)
        ):
            raise SidecarError(f"{path}: bad block table")
        self._offsets, self._tables, self._k = offsets, tables, k
        self.mv, self.path, self.rows, self.batch_rows = mv, path, n, batch_rows

    def blocks(self, rows: np.ndarray) -> tuple[list, int, np.ndarray, list[int]]:
        """For `rows` (sorted, unique): the compressed blocks holding them (CRC checked), their
        decompressed size, where each row sits in the concatenation of those blocks, and each
        block's row count."""
        if len(rows) and (rows[0] < 0 or rows[-1] >= self.rows):
            raise SidecarError(f"{self.path}: row out of range")
        block_of = rows // self.batch_rows
        needed, first = np.unique(block_of, return_index=True)
        counts = np.minimum(self.batch_rows, self.rows - needed * self.batch_rows)
        base = np.cumsum(counts) - counts  # where each needed block starts in the concatenation
        pos = base[np.repeat(np.arange(len(needed)), np.diff(np.append(first, len(rows))))]
        pos = pos + (rows - block_of * self.batch_rows)
        packed, raw = [], 0
        k, mv = self._k, self.mv
        starts, ends = self._offsets[needed].tolist(), self._offsets[needed + 1].tolist()
        crcs = self._tables[2 * k + 1 + needed].tolist()
        raw = int(self._tables[k + 1 + needed].sum())
        for b, start, end, crc in zip(needed.tolist(), starts, ends, crcs):
            block = mv[start:end]
            if zlib.crc32(block) != crc:
                raise SidecarCorrupt(f"{self.path}: block {b} fails its CRC")
            packed.append(block)
        return packed, raw, pos, counts.tolist()


def decode(header: bytes, packed: list, raw: int, counts: list[int], take: np.ndarray) -> pa.Table:
    """The rows at `take` of the blocks `packed` (zstd frames of record-batch messages): one
    decompression of all the frames (concatenated frames decompress as one) and one decode."""
    codec = pa.Codec(CODEC)
    try:
        body = codec.decompress(b"".join(packed), decompressed_size=raw, asbytes=True)
        table = ipc.open_stream(
            pa.py_buffer(b"".join([header, body, _EOS])),
            options=ipc.IpcReadOptions(use_threads=False),
        ).read_all()
        if [b.num_rows for b in table.to_batches()] != counts:
            raise SidecarError("a block does not hold its rows")
        return table.take(pa.array(take, type=pa.int64()))
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise SidecarError(str(exc)) from exc
