"""Column-wise rendering of text lines with numpy: millions of JSON lines without a Python loop.

A line is a list of segments (literal bytes, table look-ups, zero-padded digits, decimal
amounts, optional parts). Every segment gets a fixed slot as wide as its widest value, so a
batch of lines is one (rows x slots) uint8 matrix filled by whole-column assignments; unused
slot bytes stay NUL and one boolean compaction squeezes them out. NUL never occurs in a
rendered line, so the compaction cannot eat real content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _word_table(texts: list[bytes]) -> np.ndarray:
    """Up-to-4-byte strings right-aligned in one uint32 each (leading bytes NUL)."""
    matrix = np.zeros((len(texts), 4), dtype=np.uint8)
    for i, text in enumerate(texts):
        if text:
            matrix[i, 4 - len(text) :] = np.frombuffer(text, dtype=np.uint8)
    return matrix.view(np.uint32).reshape(-1)


# Zero-padded groups of k digits ("7" -> "0007" for k=4, "\0\0\x0007"... for k<4), the
# shortest spelling of 0..9999 (for the leading group of an amount), and ".cc" for cents.
_PADDED = {k: _word_table([f"{v:0{k}d}".encode() for v in range(10**k)]) for k in (1, 2, 3, 4)}
_UNPADDED = _word_table([str(v).encode() for v in range(10_000)])
_CENTS = _word_table([f".{v:02d}".encode() for v in range(100)])


class Table:
    """Byte strings to choose from, padded with NUL to whole uint32 words (NULs vanish later)."""

    def __init__(self, entries: tuple[bytes, ...]):
        if any(b"\x00" in e for e in entries):
            raise ValueError("table entries must not contain NUL bytes")
        self.entries = entries
        self.lengths = np.array([len(e) for e in entries], dtype=np.int64)
        width = int(self.lengths.max()) if len(entries) else 0
        matrix = np.zeros((max(len(entries), 1), -(-max(width, 1) // 4) * 4), dtype=np.uint8)
        for i, entry in enumerate(entries):
            matrix[i, : len(entry)] = np.frombuffer(entry, dtype=np.uint8)
        self.words = np.ascontiguousarray(matrix).view(np.uint32)

    @classmethod
    def fixed_width(cls, matrix: np.ndarray) -> Table:
        """A table whose entries all have one width, given directly as a uint8 matrix."""
        table = cls.__new__(cls)
        rows, width = matrix.shape
        table.entries = None
        table.lengths = np.full(rows, width, dtype=np.int64)
        words = np.zeros((rows, -(-width // 4) * 4), dtype=np.uint8)
        words[:, :width] = matrix
        table.words = words.view(np.uint32)
        return table

    @property
    def n_words(self) -> int:
        return self.words.shape[1]


@dataclass(frozen=True)
class Lit:
    text: bytes


@dataclass(frozen=True)
class Lut:
    """Per-row choice from a table (entries may differ in width)."""

    codes: np.ndarray
    table: Table


@dataclass(frozen=True)
class Digits:
    """A non-negative integer, zero-padded to `width` digits."""

    values: np.ndarray
    width: int


@dataclass(frozen=True)
class Cents:
    """A non-negative amount given in integer cents, written as D.CC (shortest integer part)."""

    values: np.ndarray


@dataclass(frozen=True)
class Optional:
    """Segments written only where `present` is true."""

    present: np.ndarray
    segments: tuple


def digit_count(values: np.ndarray) -> np.ndarray:
    """Number of decimal digits of each non-negative integer (0 has one digit)."""
    values = np.maximum(values, 0)
    count = np.ones(values.shape, dtype=np.int64)
    threshold = 10
    while True:
        more = values >= threshold
        if not more.any():
            return count
        count += more
        threshold *= 10


_MAX_CENTS_WORDS = 3  # integer part up to 8 digits (< 100 million)


def _n_words(segment) -> int:
    """How many uint32 words a non-literal segment's slot takes."""
    if isinstance(segment, Lut):
        return segment.table.n_words
    if isinstance(segment, Digits):
        return -(-segment.width // 4)
    if isinstance(segment, Cents):
        return _MAX_CENTS_WORDS
    raise TypeError(f"unknown segment {segment!r}")


@dataclass
class _Layout:
    template: bytearray
    jobs: list  # (word column | byte range, segment)
    lengths: np.ndarray


def _subset(segment, rows: np.ndarray):
    """The same segment restricted to `rows`."""
    if isinstance(segment, Lit):
        return segment
    if isinstance(segment, Lut):
        return Lut(segment.codes[rows], segment.table)
    if isinstance(segment, Digits):
        return Digits(segment.values[rows], segment.width)
    if isinstance(segment, Cents):
        return Cents(segment.values[rows])
    return Optional(segment.present[rows], tuple(_subset(s, rows) for s in segment.segments))


def _pad_to_word(template: bytearray) -> None:
    template += b"\x00" * (-len(template) % 4)


def _lay_out(segments, layout: _Layout, present) -> None:
    """Place literals in the template and every other segment in word-aligned slots.

    A mostly-present Optional is rendered in place and blanked where absent; a mostly-absent
    one is rendered for its present rows only and scattered in, so rare parts cost little.
    """
    lengths = layout.lengths
    for segment in segments:
        if isinstance(segment, Lit):
            layout.template += segment.text
            lengths += len(segment.text) if present is None else present * len(segment.text)
            continue
        if isinstance(segment, Optional):
            inner = segment.present if present is None else present & segment.present
            if segment.present.mean() >= 0.5:
                start = len(layout.template)
                _lay_out(segment.segments, layout, inner)
                layout.jobs.append(((start, len(layout.template)), segment))
            else:
                _pad_to_word(layout.template)
                start = len(layout.template)
                rows = np.flatnonzero(segment.present)
                sparse = _Layout(bytearray(), [], np.zeros(len(rows), dtype=np.int64))
                _lay_out(tuple(_subset(s, rows) for s in segment.segments), sparse, None)
                _pad_to_word(sparse.template)
                layout.template += b"\x00" * len(sparse.template)
                lengths[rows] += (
                    sparse.lengths if present is None else present[rows] * sparse.lengths
                )
                layout.jobs.append(((start, rows, sparse), segment))
            continue
        _pad_to_word(layout.template)
        word = len(layout.template) // 4
        layout.template += b"\x00" * (4 * _n_words(segment))
        layout.jobs.append((word, segment))
        if isinstance(segment, Lut):
            actual = segment.table.lengths[segment.codes]
        elif isinstance(segment, Digits):
            if len(segment.values) and int(segment.values.max()) >= 10**segment.width:
                raise ValueError(
                    f"value {int(segment.values.max())} exceeds {segment.width} digits"
                )
            actual = segment.width
        else:  # Cents
            if len(segment.values) and int(segment.values.max()) >= 10**10:
                raise ValueError(f"amount {int(segment.values.max()) / 100} is too large to render")
            actual = digit_count(np.maximum(segment.values, 0) // 100) + 3
        lengths += actual if present is None else present * actual


def _fill(layout: _Layout, n: int) -> np.ndarray:
    block = np.empty((n, len(layout.template)), dtype=np.uint8)
    block[:] = np.frombuffer(bytes(layout.template), dtype=np.uint8)
    words = block.view(np.uint32)
    for where, segment in layout.jobs:
        if isinstance(segment, Lut):
            words[:, where : where + segment.table.n_words] = segment.table.words[segment.codes]
        elif isinstance(segment, Digits):
            _put_digits(words, where, segment.values, segment.width)
        elif isinstance(segment, Cents):
            _put_cents(words, where, segment.values)
        elif len(where) == 3:  # sparse Optional
            start, rows, sparse = where
            if len(rows):
                block[rows, start : start + len(sparse.template)] = _fill(sparse, len(rows))
        else:  # dense Optional: blank its byte range where absent
            a, b = where
            absent = np.flatnonzero(~segment.present)
            if len(absent):
                block[absent, a:b] = 0
    return block


def _put_digits(words: np.ndarray, word: int, values: np.ndarray, width: int) -> None:
    """Zero-padded decimal digits, four per uint32 word, the leading word right-aligned."""
    n_words = -(-width // 4)
    remaining = values.astype(np.int64, copy=False)
    for i in range(n_words - 1, -1, -1):
        digits = 4 if i > 0 else width - 4 * (n_words - 1)
        if i > 0:
            remaining, low = np.divmod(remaining, 10_000)
        else:
            low = remaining
        words[:, word + i] = _PADDED[digits][low]


def _put_cents(words: np.ndarray, word: int, cents: np.ndarray) -> None:
    """D.CC with the shortest integer part: [high 4 digits][low 4 digits][".cc"]."""
    cents = np.maximum(cents, 0)
    whole, fraction = np.divmod(cents, 100)
    high, low = np.divmod(whole, 10_000)
    words[:, word] = np.where(high > 0, _UNPADDED[np.minimum(high, 9_999)], 0)
    words[:, word + 1] = np.where(high > 0, _PADDED[4][low], _UNPADDED[low])
    # ".cc" is left-aligned so it follows the digits directly: shift out the leading NUL
    words[:, word + 2] = _CENTS[fraction] >> 8 if _LITTLE_ENDIAN else _CENTS[fraction] << 8


_LITTLE_ENDIAN = np.little_endian


@dataclass(frozen=True)
class RenderedLines:
    """Lines laid end to end: line i is data[offsets[i]:offsets[i + 1]]."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len n + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def line(self, i: int) -> bytes:
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes()


# Rows rendered per block: small enough that a block (rows x ~300 bytes) stays in cache while
# every column of it is written, which is what makes the column-wise writes cheap.
BLOCK_ROWS = 8192


def _slice(segment, a: int, b: int):
    if isinstance(segment, Lit):
        return segment
    if isinstance(segment, Lut):
        return Lut(segment.codes[a:b], segment.table)
    if isinstance(segment, Digits):
        return Digits(segment.values[a:b], segment.width)
    if isinstance(segment, Cents):
        return Cents(segment.values[a:b])
    return Optional(segment.present[a:b], tuple(_slice(s, a, b) for s in segment.segments))


def _render_block(segments: tuple, n: int, out: np.ndarray) -> np.ndarray:
    """Render one block into `out` (exactly as long as the block's bytes); return lengths."""
    layout = _Layout(template=bytearray(), jobs=[], lengths=np.zeros(n, dtype=np.int64))
    _lay_out(segments, layout, None)
    _pad_to_word(layout.template)
    flat = _fill(layout, n).reshape(-1)
    data = flat[flat != 0]
    if len(data) != len(out) or len(data) != layout.lengths.sum():  # pragma: no cover
        raise AssertionError(f"rendered {len(data)} bytes, expected {len(out)}")
    out[:] = data
    return layout.lengths


def line_lengths(segments: tuple, n: int) -> np.ndarray:
    layout = _Layout(template=bytearray(), jobs=[], lengths=np.zeros(n, dtype=np.int64))
    _lay_out(segments, layout, None)
    return layout.lengths


def render(segments: tuple, n: int) -> RenderedLines:
    """Render n rows of `segments` into contiguous bytes, rows in their given order."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(line_lengths(segments, n), out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    for a in range(0, n, BLOCK_ROWS):
        b = min(a + BLOCK_ROWS, n)
        block_segments = tuple(_slice(s, a, b) for s in segments)
        _render_block(block_segments, b - a, data[offsets[a] : offsets[b]])
    return RenderedLines(data=data, offsets=offsets)
