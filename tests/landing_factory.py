"""Small hand-written landing files for unit tests (the integration tests use refinery-synth)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "event_type": "View",
    "event_time": "2026-03-01T10:00:00+02:00",
    "product_id": "p1",
    "device": "web",
    "session_id": "s1",
}


def event(**overrides) -> dict:
    row = {**GOOD, **overrides}
    return {k: v for k, v in row.items() if v is not ...}


def line(obj) -> bytes:
    return json.dumps(obj).encode()


def write_lines(path: Path, lines: list[bytes], gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = b"\n".join(lines) + (b"\n" if lines else b"")
    path.write_bytes(gzip.compress(blob, mtime=0) if gz else blob)
    return path


# One line per bad-input kind of issue 2, with the reason silver must give it.
FAULTY_LINES: list[tuple[bytes, str | None]] = [
    (line(event(event_id="ok1")), None),
    (b'{"event_id": "e2", "user_', "malformed_json"),
    (line(event(event_id="e3", user_id="X")).replace(b'"X"', b'"\xff\xfe"'), "invalid_utf8"),
    (line(event(event_id="e4", user_id=...)), "missing_required_field"),
    (line(event(event_id="e5", event_type="purchase", amount="twelve")), "invalid_type"),
    (line(event(event_id="e6", event_type="refund")), "unknown_event_type"),
    (line(event(event_id="e7", event_type="purchase", amount=-3.5)), "negative_amount"),
    (line(event(event_id="e8", event_time="2026-03-04T10:00:00Z")), "future_event_time"),
    (line(event(event_id="e9", event_time="2026-03-01T10:00:00+25:00")), "invalid_event_time"),
    (line(event(event_id="e10", event_time="2026-03-01T10:00:00 PST")), "invalid_event_time"),
    (line(event(event_id="e11", coupon_code="X1", experiment={"arm": "b"})), None),
    (line(event(event_id="ok1")), "duplicate"),
    (b"[1, 2]", "not_a_json_object"),
    (line(event(event_id="e12", event_type="PURCHASE", amount=12.5, quantity=2)), None),
    (line(event(event_id="e13", event_type="click", product_id=..., device=None)), None),
]

USERS_CSV = (
    "user_id,signup_date,country,birth_year,marketing_opt_in,plan\n"
    "u1,2025-01-01,de,1990,true,free\n"
    "u2,2025-02-01,US,1985,false,pro\n"
    "u3,2026-09-01,US,1985,false,pro\n"  # signup after the snapshot date
    "u4,2025-02-01,USA,1985,false,pro\n"  # not alpha-2
    "u5,2025-02-01,FR,1985,maybe,plus\n"  # not a boolean
    "u2,2025-02-01,US,1985,false,pro\n"  # duplicate key
)
PRODUCTS_CSV = (
    "product_id,category,brand,list_price,active\n"
    "p1,Books,acme,12.5,true\n"
    "p2,toys,acme,-1,true\n"
    "p3,toys,,3.0,false\n"
)
