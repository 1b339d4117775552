"""How an event row becomes its JSON line in the landing files.

Keys follow the landing contract's order. Line variety comes from the row's own formatting
columns (offset written, case of event_type, fractional seconds, optional quantity), so the
same row always renders to the same bytes.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np

from refinery.synth.lines import Cents, Digits, Lit, Lut, Optional, RenderedLines, Table, render
from refinery.synth.sessions import CLICK, DAY_MS, EVENT_TYPES, PURCHASE, EventBatch
from refinery.synth.world import OFFSET_MINUTES, OFFSETS

EVENT_SEQ_DIGITS = 8
SESSION_SEQ_DIGITS = 8
USER_DIGITS = 7
PRODUCT_DIGITS = 6
EPOCH = dt.date(1970, 1, 1)


def user_id(index: int) -> str:
    return f"u{index + 1:0{USER_DIGITS}d}"


def product_id(index: int) -> str:
    return f"p{index + 1:0{PRODUCT_DIGITS}d}"


@lru_cache(maxsize=1)
def _clock_table() -> Table:
    """ "HH:MM:SS" for every second of a day, as one fixed-width matrix."""
    second = np.arange(86_400)
    parts = [second // 3600, (second // 60) % 60, second % 60]
    matrix = np.empty((86_400, 8), dtype=np.uint8)
    for i, part in enumerate(parts):
        matrix[:, 3 * i] = 48 + part // 10
        matrix[:, 3 * i + 1] = 48 + part % 10
    matrix[:, 2] = matrix[:, 5] = ord(":")
    return Table.fixed_width(matrix)


@lru_cache(maxsize=1)
def _type_table() -> Table:
    spellings = []
    for name in EVENT_TYPES:
        title = "_".join(w.capitalize() for w in name.split("_"))
        spellings += [name.encode(), title.encode(), name.upper().encode()]
    return Table(tuple(spellings))


@lru_cache(maxsize=1)
def _offset_table() -> Table:
    return Table(tuple(o.encode() for o in OFFSETS))


@lru_cache(maxsize=1)
def _device_table() -> Table:
    return Table((b"null", b'"web"', b'"ios"', b'"android"'))


def event_day_epoch(start: dt.date, day_index: np.ndarray) -> np.ndarray:
    return (start - EPOCH).days + day_index.astype(np.int64)


def render_events(batch: EventBatch, start: dt.date) -> RenderedLines:
    """The JSON lines (with trailing newline) of every row of `batch`, in row order."""
    n = len(batch)
    day = batch["event_day"]
    stream = batch["stream"]
    pair = day.astype(np.int64) * 256 + stream.astype(np.int64)
    pairs, prefix_code = np.unique(pair, return_inverse=True)
    pair_names = [
        f"{(start + dt.timedelta(days=int(p // 256))).strftime('%Y%m%d')}-{chr(int(p % 256))}"
        for p in pairs
    ]
    event_prefix = Table(tuple(f"ev-{name}".encode() for name in pair_names))
    session_prefix = Table(tuple(name.encode() for name in pair_names))

    local_ms = batch["time_ms"] + OFFSET_MINUTES[batch["offset"]] * 60_000
    local_day, ms_of_day = np.divmod(local_ms, DAY_MS)
    first_day = int(local_day.min()) if n else 0
    dates = Table(
        tuple(
            (EPOCH + dt.timedelta(days=d)).isoformat().encode()
            for d in range(first_day, int(local_day.max()) + 1 if n else first_day + 1)
        )
    )
    kind = batch["event_type"].astype(np.int64)
    has_product = batch["product"] >= 0
    has_amount = batch["cents"] >= 0
    null = (Lit(b"null"),)
    segments = (
        Lit(b'{"event_id":"'),
        Lut(prefix_code, event_prefix),
        Digits(batch["seq"], EVENT_SEQ_DIGITS),
        Lit(b'","user_id":"u'),
        Digits(batch["user"] + 1, USER_DIGITS),
        Lit(b'","event_type":"'),
        Lut(kind * 3 + batch["case"], _type_table()),
        Lit(b'","event_time":"'),
        Lut(local_day - first_day, dates),
        Lit(b"T"),
        Lut(ms_of_day // 1000, _clock_table()),
        Optional(batch["has_fraction"], (Lit(b"."), Digits(ms_of_day % 1000, 3))),
        Lut(batch["offset"].astype(np.int64), _offset_table()),
        Lit(b'","product_id":'),
        Optional(
            has_product, (Lit(b'"p'), Digits(batch["product"] + 1, PRODUCT_DIGITS), Lit(b'"'))
        ),
        Optional(~has_product, null),
        Lit(b',"amount":'),
        Optional(has_amount, (Cents(batch["cents"]),)),
        Optional(~has_amount, null),
        Optional(batch["has_quantity"], (Lit(b',"quantity":'), Digits(batch["quantity"], 1))),
        Lit(b',"device":'),
        Lut(batch["device"].astype(np.int64) + 1, _device_table()),
        Lit(b',"session_id":'),
        Optional(
            batch["has_session"],
            (
                Lit(b'"s-'),
                Lut(prefix_code, session_prefix),
                Digits(batch["session_seq"], SESSION_SEQ_DIGITS),
                Lit(b'"'),
            ),
        ),
        Optional(~batch["has_session"], null),
        Lit(b"}\n"),
    )
    return render(segments, n)


__all__ = ["CLICK", "PURCHASE", "product_id", "render_events", "user_id"]
