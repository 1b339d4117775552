"""The faults upstream systems really send, injected at known lines so tests have ground truth.

Faults are planned per arrival day on that day's own on-time rows (never on a late event, and
never on an event that is re-delivered later, so a re-delivery is always a verbatim copy of a
valid line and the manifest's late counts are exact). A faulty
row's clean line is replaced by its faulty version; `duplicate_line` instead writes the clean
line twice in a row; `extra_fields` lines stay valid per contract.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np

from refinery.synth.rng import rng_for
from refinery.synth.sessions import ON_TIME, PURCHASE, EventBatch

FAULT_KINDS = (
    "malformed_json",
    "invalid_utf8",
    "missing_required_field",
    "wrong_type",
    "unknown_event_type",
    "negative_amount",
    "future_timestamp",
    "bad_timezone",
    "extra_fields",
    "duplicate_line",
)
# Lines of these kinds break the landing contract (quarantine); the other two do not.
INVALID_KINDS = frozenset(FAULT_KINDS) - {"extra_fields", "duplicate_line"}
# A day this large carries every kind at least once when faults are on.
EVERY_KIND_FROM_EVENTS = 2000

_MISSING_FIELDS = ("event_id", "user_id", "event_time")
_UNKNOWN_TYPES = ("refund", "Refund", "wishlist_add")
_BAD_ZONES = ("+25:00", " PST", "")
_WRONG_TYPES = ("amount", "quantity", "event_time")


@dataclass(frozen=True)
class PlannedFault:
    kind: str
    variant: int  # which flavour of the kind (e.g. which field is missing)
    u: float  # a uniform draw for the flavour's free parameter (cut point, hours ahead ...)


def fault_counts(total_lines: int, fault_rate: float, rng: np.random.Generator) -> dict[str, int]:
    """How many lines of each kind a day gets: `fault_rate` of its lines, spread evenly."""
    if fault_rate <= 0 or total_lines == 0:
        return {kind: 0 for kind in FAULT_KINDS}
    total = round(fault_rate * total_lines)
    base, extra = divmod(total, len(FAULT_KINDS))
    bonus = set(rng.permutation(len(FAULT_KINDS))[:extra].tolist())
    counts = {kind: base + (i in bonus) for i, kind in enumerate(FAULT_KINDS)}
    if total_lines >= EVERY_KIND_FROM_EVENTS:
        counts = {kind: max(1, c) for kind, c in counts.items()}
    return counts


def plan_faults(
    events: EventBatch, seed: int, day_index: int, fault_rate: float
) -> dict[int, PlannedFault]:
    """Row index (in the day's arrival order) -> the fault that row's line will carry."""
    rng = rng_for(seed, day_index, "faults")
    counts = fault_counts(len(events), fault_rate, rng)
    wanted = sum(counts.values())
    if wanted == 0:
        return {}
    origin = events["origin"]
    candidates = np.flatnonzero(origin == ON_TIME)
    if len(candidates) == 0:
        return {}
    wanted = min(wanted, len(candidates))
    chosen = candidates[np.sort(rng.choice(len(candidates), size=wanted, replace=False))]
    chosen = chosen[rng.permutation(len(chosen))]
    # negative_amount goes to purchases where there are any, so the line stays plausible
    is_purchase = events["event_type"][chosen] == PURCHASE
    purchase_first = np.concatenate([chosen[is_purchase], chosen[~is_purchase]])
    plan: dict[int, PlannedFault] = {}
    n_negative = min(counts["negative_amount"], len(purchase_first))
    for row in purchase_first[:n_negative]:
        plan[int(row)] = PlannedFault("negative_amount", 0, 0.0)
    remaining = [int(r) for r in chosen if int(r) not in plan]
    kinds = [k for k in FAULT_KINDS if k != "negative_amount" for _ in range(counts[k])]
    variants = rng.integers(0, 3, len(kinds))
    draws = rng.random(len(kinds))
    for row, kind, variant, u in zip(remaining, kinds, variants, draws):
        plan[row] = PlannedFault(kind, int(variant), float(u))
    return plan


def _dump(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _strip_offset(timestamp: str) -> str:
    if timestamp.endswith("Z"):
        return timestamp[:-1]
    return timestamp[:-6]


def faulty_line(fault: PlannedFault, clean: bytes, arrival_date: dt.date) -> bytes:
    """The line that replaces `clean` (for duplicate_line: the copy written after it)."""
    kind, variant, u = fault.kind, fault.variant, fault.u
    if kind == "duplicate_line":
        return clean
    if kind == "malformed_json":
        cut = 14 + int(u * (len(clean) - 20))  # always before the closing brace
        return clean[:cut] + b"\n"
    if kind == "invalid_utf8":
        return clean.replace(b'"user_id":"u', b'"user_id":"u\xff\xfe', 1)
    record = json.loads(clean)
    if kind == "missing_required_field":
        del record[_MISSING_FIELDS[variant]]
    elif kind == "wrong_type":
        field = _WRONG_TYPES[variant]
        if field == "amount":
            record["amount"] = "twelve"
        elif field == "quantity":
            record["quantity"] = "two"
        else:
            instant = dt.datetime.fromisoformat(record["event_time"])
            record["event_time"] = int(instant.timestamp())
    elif kind == "unknown_event_type":
        record["event_type"] = _UNKNOWN_TYPES[variant]
    elif kind == "negative_amount":
        amount = record.get("amount")
        record["event_type"] = "purchase"
        # one fault per line: a click turned purchase needs the product a purchase must name
        if not record.get("product_id"):
            record["product_id"] = "p000001"
        record["amount"] = -round(abs(amount) if amount else 10.0 + 90.0 * u, 2) or -1.0
        record.setdefault("quantity", 1)
    elif kind == "future_timestamp":
        end_of_arrival = dt.datetime.combine(arrival_date, dt.time(), dt.UTC) + dt.timedelta(days=1)
        when = end_of_arrival + dt.timedelta(days=2, seconds=int(1 + u * 3 * 86_400))
        record["event_time"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    elif kind == "bad_timezone":
        record["event_time"] = _strip_offset(record["event_time"]) + _BAD_ZONES[variant]
    elif kind == "extra_fields":
        if variant in (0, 2):
            record["coupon_code"] = "SPRING10"
        if variant in (1, 2):
            record["experiment"] = {"id": f"exp-{int(u * 90) + 10}", "arm": "b" if u > 0.5 else "a"}
        if variant == 2:
            record["app_version"] = "5.12.0"
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown fault kind {kind!r}")
    return _dump(record)
