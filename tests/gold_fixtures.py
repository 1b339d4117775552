"""A small silver lake, written exactly to the silver interfaces, for the gold (dbt) tests.

Day D = 2025-01-05 is the day whose features are checked by hand. The story:
- u1 (plan free, then plus from the 01-05 snapshot) acts on 12-29, 01-03 and 01-05; two of its
  events happen before the end of 01-05 but arrive later (01-06, 01-07); a purchase on 01-08
  arrives late on 01-10 (counts for the label of 01-05).
- u2 views every day; its purchase on 01-12 arrives on 01-16, after the allowed lateness of
  D=01-05's label, and its purchase on 01-13 is outside the horizon: label 0.
- u3 drops out of the users snapshot from 01-07 on (no users file arrives on 01-08 at all).
- u4 never acts: no feature row. p3 moves from games to toys in the 01-07 catalogue.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from refinery.resources.lake import LakePaths, write_parquet_atomic

FIRST_DAY = date(2025, 1, 1)
LAST_DAY = date(2025, 1, 16)
D = date(2025, 1, 5)

EVENT_SCHEMA = {
    "event_id": pl.String,
    "user_id": pl.String,
    "event_type": pl.String,
    "event_time": pl.Datetime("us", "UTC"),
    "product_id": pl.String,
    "amount": pl.Float64,
    "quantity": pl.Int32,
    "device": pl.String,
    "session_id": pl.String,
    "arrival_date": pl.Date,
    "_source_file": pl.String,
    "_line": pl.Int64,
    "_ingested_at": pl.Datetime("us", "UTC"),
}
USER_SCHEMA = {
    "user_id": pl.String,
    "signup_date": pl.Date,
    "country": pl.String,
    "birth_year": pl.Int32,
    "marketing_opt_in": pl.Boolean,
    "plan": pl.String,
    "snapshot_date": pl.Date,
}
PRODUCT_SCHEMA = {
    "product_id": pl.String,
    "category": pl.String,
    "brand": pl.String,
    "list_price": pl.Float64,
    "active": pl.Boolean,
    "snapshot_date": pl.Date,
}

U1_SIGNUP = date(2024, 6, 1)
U1_BIRTH_YEAR = 1990


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def _event(
    event_id,
    user,
    kind,
    when,
    arrival,
    product=None,
    amount=None,
    quantity=1,
    device=None,
    session=None,
) -> dict:
    return {
        "event_id": event_id,
        "user_id": user,
        "event_type": kind,
        "event_time": when,
        "product_id": product,
        "amount": amount,
        "quantity": quantity,
        "device": device,
        "session_id": session,
        "arrival_date": arrival,
    }


def scenario_events() -> list[dict]:
    d = D
    day = timedelta(days=1)
    events = [
        _event("u1-e1", "u1", "view", at(d, 10), d, "p1", device="ios", session="s1"),
        _event("u1-e2", "u1", "add_to_cart", at(d, 10, 5), d, "p1", device="ios", session="s1"),
        _event("u1-e3", "u1", "purchase", at(d, 10, 10), d, "p1", 20.0, 2, "ios", "s1"),
        _event(
            "u1-e4", "u1", "view", at(d - 2 * day, 9), d - 2 * day, "p2", device="web", session="s2"
        ),
        _event(
            "u1-e5", "u1", "click", at(d - 2 * day, 9, 1), d - 2 * day, device="web", session="s2"
        ),
        _event(
            "u1-e6",
            "u1",
            "view",
            at(date(2024, 12, 29), 12),
            FIRST_DAY,
            "p3",
            device="android",
            session="s3",
        ),
        # Late: happened on D, arrived D+2.
        _event("u1-e8", "u1", "view", at(d, 23), d + 2 * day, "p1", device="web", session="s4"),
        # Late: happened on D-1, arrived D+1.
        _event("u1-e9", "u1", "purchase", at(d - day, 20), d + day, "p2", 5.0, 1, "web", "s5"),
        # Late purchase inside D's label horizon (D+3, arrives D+5 <= D+10).
        _event(
            "u1-e10", "u1", "purchase", at(d + 3 * day, 8), d + 5 * day, "p2", 9.99, 1, "ios", "s6"
        ),
        # u2: in the horizon but arriving after D+10; and a purchase after the horizon.
        _event("u2-late", "u2", "purchase", at(d + 7 * day, 8), d + 11 * day, "p1", 12.0),
        _event("u2-after", "u2", "purchase", at(d + 8 * day, 8), d + 8 * day, "p1", 12.0),
    ]
    current = FIRST_DAY
    while current <= LAST_DAY:
        events.append(
            _event(
                f"u2-v-{current}",
                "u2",
                "view",
                at(current, 7),
                current,
                "p2",
                device="web",
                session=f"u2-{current}",
            )
        )
        if current <= date(2025, 1, 10):
            events.append(
                _event(f"u3-c-{current}", "u3", "click", at(current, 6), current, device="android")
            )
        current += day
    return events


def scenario_users(snapshot_date: date) -> list[dict] | None:
    """The CRM snapshot that arrives on `snapshot_date` (None: no file that day)."""
    if snapshot_date == date(2025, 1, 8):
        return None
    users = [
        {
            "user_id": "u1",
            "signup_date": U1_SIGNUP,
            "country": "DE",
            "birth_year": U1_BIRTH_YEAR,
            "marketing_opt_in": True,
            "plan": "plus" if snapshot_date >= D else "free",
        },
        {
            "user_id": "u2",
            "signup_date": date(2023, 3, 15),
            "country": "FR",
            "birth_year": 1985,
            "marketing_opt_in": False,
            "plan": "pro",
        },
        {
            "user_id": "u4",
            "signup_date": date(2024, 12, 1),
            "country": "US",
            "birth_year": 2000,
            "marketing_opt_in": False,
            "plan": "free",
        },
    ]
    if snapshot_date < date(2025, 1, 7):
        users.append(
            {
                "user_id": "u3",
                "signup_date": date(2024, 1, 1),
                "country": "PL",
                "birth_year": 1970,
                "marketing_opt_in": True,
                "plan": "free",
            }
        )
    return users


def scenario_products(snapshot_date: date) -> list[dict]:
    return [
        {
            "product_id": "p1",
            "category": "books",
            "brand": "acme",
            "list_price": 10.0,
            "active": True,
        },
        {
            "product_id": "p2",
            "category": "toys",
            "brand": "acme",
            "list_price": 5.0,
            "active": True,
        },
        {
            "product_id": "p3",
            "category": "games" if snapshot_date < date(2025, 1, 7) else "toys",
            "brand": "zeta",
            "list_price": 30.0,
            "active": True,
        },
    ]


def write_silver(
    root: Path,
    until: date,
    since: date = FIRST_DAY,
    extra_events: list[dict] = (),
    extra_users: list[dict] = (),
) -> None:
    """Write the silver partitions of arrival dates since..until (inclusive): the scenario, plus
    `extra_events` and (on every day the CRM delivers a snapshot) `extra_users`."""
    lake = LakePaths(root)
    events_by_day: dict[date, list[dict]] = defaultdict(list)
    for event in [*scenario_events(), *extra_events]:
        events_by_day[event["arrival_date"]].append(event)
    ingested_at = datetime(2025, 2, 1, tzinfo=UTC)
    current = since
    while current <= until:
        key = current.isoformat()
        rows = [
            {
                **event,
                "_source_file": f"landing/events/{key}/events.jsonl",
                "_line": line,
                "_ingested_at": ingested_at,
            }
            for line, event in enumerate(events_by_day.get(current, []), start=1)
        ]
        write_parquet_atomic(
            pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row"),
            lake.partition_file("silver", "events", key),
        )
        users = scenario_users(current)
        if users is not None:
            write_parquet_atomic(
                pl.DataFrame(
                    [{**u, "snapshot_date": current} for u in [*users, *extra_users]],
                    schema=USER_SCHEMA,
                ),
                lake.partition_file("silver", "users", key),
            )
        write_parquet_atomic(
            pl.DataFrame(
                [{**p, "snapshot_date": current} for p in scenario_products(current)],
                schema=PRODUCT_SCHEMA,
            ),
            lake.partition_file("silver", "products", key),
        )
        current += timedelta(days=1)


def write_random_silver(
    root: Path, first: date, days: int, users: int, events_per_day: int, seed: int
) -> None:
    """A denser generated silver lake (seeded): many purchases per user with cent amounts, one
    file per arrival date, so DuckDB's threads scan and aggregate it in parallel; some events
    arrive a day or two late. For the determinism tests, not for hand-checked values."""
    import random

    rng = random.Random(seed)
    lake = LakePaths(root)
    kinds = ("view", "view", "click", "add_to_cart", "purchase", "purchase")
    ingested_at = datetime(2025, 6, 1, tzinfo=UTC)
    for offset in range(days):
        arrival = first + timedelta(days=offset)
        rows = []
        for i in range(events_per_day):
            late = rng.choice((0, 0, 0, 0, 1, 2))
            when = datetime.combine(arrival - timedelta(days=late), datetime.min.time(), UTC)
            kind = rng.choice(kinds)
            rows.append(
                {
                    "event_id": f"{arrival}-{i}",
                    "user_id": f"u{rng.randrange(users)}",
                    "event_type": kind,
                    "event_time": when + timedelta(seconds=rng.randrange(86_400)),
                    "product_id": f"p{rng.randrange(20)}",
                    "amount": round(rng.uniform(0.01, 999.99), 2) if kind == "purchase" else None,
                    "quantity": rng.randrange(1, 4) if kind == "purchase" else None,
                    "device": rng.choice(("ios", "android", "web", None)),
                    "session_id": f"s{rng.randrange(users * 3)}",
                    "arrival_date": arrival,
                    "_source_file": f"landing/events/{arrival}/events.jsonl",
                    "_line": i + 1,
                    "_ingested_at": ingested_at,
                }
            )
        write_parquet_atomic(
            pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row"),
            lake.partition_file("silver", "events", arrival.isoformat()),
        )
        user_rows = [
            {
                "user_id": f"u{u}",
                "signup_date": date(2024, 1, 1) + timedelta(days=u),
                "country": ("DE", "FR", "US")[u % 3],
                "birth_year": 1960 + u % 40,
                "marketing_opt_in": u % 2 == 0,
                "plan": ("free", "plus", "pro")[(u + offset // 7) % 3],
                "snapshot_date": arrival,
            }
            for u in range(users)
        ]
        write_parquet_atomic(
            pl.DataFrame(user_rows, schema=USER_SCHEMA),
            lake.partition_file("silver", "users", arrival.isoformat()),
        )
        product_rows = [
            {
                "product_id": f"p{p}",
                "category": ("books", "toys", "games", "garden")[(p + offset // 10) % 4],
                "brand": "acme",
                "list_price": round(1 + p * 3.37, 2),
                "active": True,
                "snapshot_date": arrival,
            }
            for p in range(20)
        ]
        write_parquet_atomic(
            pl.DataFrame(product_rows, schema=PRODUCT_SCHEMA),
            lake.partition_file("silver", "products", arrival.isoformat()),
        )


def range_tags(first: date, last: date) -> dict[str, str]:
    """The tags of one Dagster run over the partitions first..last (a single-run backfill)."""
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def run_gold(root: Path, first: date, last: date, **materialize_kwargs):
    """The gold assets over knowledge dates first..last in one Dagster run, real dbt, reading
    and writing the data root `root` (the lake resource's, not REFINERY_DATA_DIR's)."""
    from dagster import materialize

    from refinery.assets.gold import dbt_resource, gold_assets
    from refinery.resources import LakeResource

    resources = {"dbt": dbt_resource(), "lake": LakeResource(data_dir=str(root))}
    return materialize(
        gold_assets, resources=resources, tags=range_tags(first, last), **materialize_kwargs
    )
