"""The gold marts by their definition, in the plainest SQL: every event joined to every as-of date
whose window holds it (the naive algorithm gold used before it pre-aggregated), read straight from
silver's Parquet. The gold tests hold the dbt models to it on generated lakes.

Definitions (docs/DESIGN.md "Point-in-time correctness"): a feature of (user, D) sees the events
that arrived on or before D and happened on one of the 30 days ending with D, each categorised by
the catalogue version valid on D; profile columns come from the CRM version valid on D. The label
of (user, D) is 1 when a purchase happened on D+1..D+7 and arrived by D+10; the population is the
users with a feature row on D.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from refinery.resources.lake import LakePaths, write_parquet_atomic
from tests.gold_fixtures import EVENT_SCHEMA, PRODUCT_SCHEMA, USER_SCHEMA

WINDOW, LOOKBACK, HORIZON, LATENESS = 30, 90, 7, 3

_SCD2 = """
with snapshots as (select * from {source}),
dates as (
    select snapshot_date,
        lag(snapshot_date) over (order by snapshot_date) as previous_date,
        lead(snapshot_date) over (order by snapshot_date) as next_date
    from (select distinct snapshot_date from snapshots)
),
marked as (
    select s.*, d.previous_date,
        lag(s.snapshot_date) over w as previous_seen,
        {lags}
    from snapshots s join dates d using (snapshot_date)
    window w as (partition by s.{key} order by s.snapshot_date)
),
numbered as (
    select *, sum(cast(previous_seen is null or previous_seen is distinct from previous_date
        {changes} as integer)) over (partition by {key} order by snapshot_date
        rows unbounded preceding) as version
    from marked
),
versions as (
    select {key}, min(snapshot_date) as valid_from, max(snapshot_date) as last_seen, {firsts}
    from numbered group by {key}, version
)
select v.* exclude (last_seen), d.next_date as valid_to
from versions v join dates d on v.last_seen = d.snapshot_date
"""


def _scd2(source: str, key: str, attributes: list[str]) -> str:
    return _SCD2.format(
        source=source,
        key=key,
        lags=", ".join(f"lag(s.{a}) over w as previous_{a}" for a in attributes),
        changes="".join(f" or {a} is distinct from previous_{a}" for a in attributes),
        firsts=", ".join(f"arg_min({a}, snapshot_date) as {a}" for a in attributes),
    )


def _glob(root: Path, table: str) -> str:
    return (
        f"read_parquet('{LakePaths(root).lake}/silver/{table}/date=*/part-*.parquet', "
        "hive_partitioning = true, hive_types = {'date': 'date'})"
    )


def reference_features(root: Path, as_of_dates: list[date]) -> pl.DataFrame:
    dates = ", ".join(f"date '{d}'" for d in as_of_dates)
    sql = f"""
    set TimeZone = 'UTC';
    create temp table as_of as select cast(unnest([{dates}]) as date) as as_of_date;
    create temp table events as select user_id, event_type,
        cast(timezone('UTC', event_time) as date) as event_date, product_id,
        cast(amount as decimal(38, 6)) as amount, cast(quantity as integer) as quantity,
        device, session_id, cast(date as date) as arrival_date
        from {_glob(root, "events")};
    create temp table products as {_scd2(_glob(root, "products"), "product_id", ["category"])};
    create temp table users as {
        _scd2(
            _glob(root, "users"),
            "user_id",
            ["signup_date", "country", "birth_year", "marketing_opt_in", "plan"],
        )
    };
    create temp table known as
        select a.as_of_date, e.*, a.as_of_date - e.event_date as days_ago, p.category
        from events e join as_of a on e.arrival_date <= a.as_of_date
            and e.event_date <= a.as_of_date and e.event_date > a.as_of_date - {WINDOW}
        left join products p on p.product_id = e.product_id and p.valid_from <= a.as_of_date
            and (p.valid_to is null or p.valid_to > a.as_of_date);
    """
    counts = []
    for kind, name in [
        (None, "events"),
        ("view", "views"),
        ("click", "clicks"),
        ("add_to_cart", "add_to_carts"),
        ("purchase", "purchases"),
    ]:
        for days, suffix in [(1, "1d"), (7, "7d"), (WINDOW, "30d")]:
            condition = f"days_ago < {days}" + (f" and event_type = '{kind}'" if kind else "")
            counts.append(f"count(*) filter (where {condition}) as {name}_{suffix}")
    spends = [
        f"coalesce(sum(amount) filter (where event_type = 'purchase' and days_ago < {days}), 0)"
        f" as spend_{suffix}"
        for days, suffix in [(1, "1d"), (7, "7d"), (WINDOW, "30d")]
    ]
    query = f"""
    with agg as (
        select user_id, as_of_date, {", ".join(counts)},
            coalesce(sum(quantity) filter (where event_type = 'purchase'), 0) as items,
            {", ".join(spends)},
            count(distinct session_id) filter (where days_ago < 7) as sessions_7d,
            count(distinct session_id) as sessions_30d,
            count(distinct event_date) as active_days_30d,
            count(distinct product_id) as distinct_products_30d,
            count(distinct category) as distinct_categories_30d,
            min(days_ago) as days_since_last_event,
            count(device) as with_device,
            count(*) filter (where device in ('ios', 'android')) as mobile
        from known group by user_id, as_of_date
    ),
    categories as (
        select user_id, as_of_date, category, row_number() over (partition by user_id, as_of_date
            order by count(*) desc, category) as r
        from known where category is not null group by user_id, as_of_date, category
    ),
    devices as (
        select user_id, as_of_date, device, row_number() over (partition by user_id, as_of_date
            order by count(*) desc, device) as r
        from known where device is not null group by user_id, as_of_date, device
    ),
    last_purchase as (
        select e.user_id, a.as_of_date, max(e.event_date) as last_date
        from events e join as_of a on e.arrival_date <= a.as_of_date
            and e.event_date <= a.as_of_date and e.event_date > a.as_of_date - {LOOKBACK}
        where e.event_type = 'purchase' group by e.user_id, a.as_of_date
    )
    select agg.user_id, agg.as_of_date,
        {", ".join(f"cast({c.split(' as ')[-1]} as bigint) as {c.split(' as ')[-1]}" for c in counts)},
        cast(items as bigint) as items_purchased_30d,
        cast(spend_1d as double) as spend_1d, cast(spend_7d as double) as spend_7d,
        cast(spend_30d as double) as spend_30d,
        cast(spend_30d as double) / nullif(purchases_30d, 0) as avg_order_value_30d,
        cast(sessions_7d as bigint) as sessions_7d, cast(sessions_30d as bigint) as sessions_30d,
        cast(active_days_30d as bigint) as active_days_30d,
        cast(distinct_products_30d as bigint) as distinct_products_30d,
        cast(distinct_categories_30d as bigint) as distinct_categories_30d,
        cast(days_since_last_event as bigint) as days_since_last_event,
        cast(agg.as_of_date - last_purchase.last_date as bigint) as days_since_last_purchase,
        cast(add_to_carts_30d / nullif(views_30d, 0) as double) as view_to_cart_rate_30d,
        cast(purchases_30d / nullif(add_to_carts_30d, 0) as double) as cart_to_purchase_rate_30d,
        cast(mobile / nullif(with_device, 0) as double) as share_mobile_30d,
        categories.category as favourite_category_30d,
        devices.device as main_device_30d,
        cast(agg.as_of_date - u.signup_date as bigint) as tenure_days,
        cast(year(agg.as_of_date) - u.birth_year as bigint) as age,
        cast(u.marketing_opt_in as bigint) as marketing_opt_in,
        u.plan, u.country
    from agg
    left join categories using (user_id, as_of_date)
    left join devices using (user_id, as_of_date)
    left join last_purchase using (user_id, as_of_date)
    left join users u on u.user_id = agg.user_id and u.valid_from <= agg.as_of_date
        and (u.valid_to is null or u.valid_to > agg.as_of_date)
    where (categories.r = 1 or categories.r is null) and (devices.r = 1 or devices.r is null)
    order by agg.as_of_date, agg.user_id
    """
    with duckdb.connect() as con:
        con.execute(sql)
        return pl.from_arrow(con.sql(query).to_arrow_table())


def reference_labels(root: Path, features: pl.DataFrame) -> pl.DataFrame:
    """Labels of the (user, as-of date) rows of `features`."""
    with duckdb.connect() as con:
        con.register("population", features.select("user_id", "as_of_date").to_arrow())
        return pl.from_arrow(
            con.sql(f"""
            set TimeZone = 'UTC';
            with purchases as (
                select user_id, cast(timezone('UTC', event_time) as date) as event_date,
                    cast(date as date) as arrival_date
                from {_glob(root, "events")} where event_type = 'purchase'
            )
            select p.user_id, p.as_of_date,
                cast(count(q.user_id) > 0 as integer) as label,
                cast(p.as_of_date + {HORIZON} as date) as label_window_end,
                cast(p.as_of_date + {HORIZON + LATENESS} as date) as labelled_on
            from population p left join purchases q on q.user_id = p.user_id
                and q.event_date > p.as_of_date and q.event_date <= p.as_of_date + {HORIZON}
                and q.arrival_date <= p.as_of_date + {HORIZON + LATENESS}
            group by p.user_id, p.as_of_date order by p.as_of_date, p.user_id
        """).to_arrow_table()
        )


def write_hostile_silver(root: Path, first: date, days: int, users: int, seed: int) -> None:
    """A generated silver lake that exercises every corner of the feature definitions: events
    arriving up to 40 days late, sessions spanning midnight and recurring, products that change
    category, leave and rejoin the catalogue or were never in it, null devices, products and
    sessions, purchases with cent amounts, users whose CRM attributes change or who vanish, days
    without a users file. Every row satisfies the silver contract (event_time before the end of
    its arrival day)."""
    rng = random.Random(seed)
    lake = LakePaths(root)
    kinds = ("view", "view", "view", "click", "add_to_cart", "purchase", "purchase")
    products = [f"p{i}" for i in range(12)]
    categories = ("toys", "games", "books", "garden")
    ingested = datetime(2026, 6, 1, tzinfo=UTC)
    for offset in range(days):
        arrival = first + timedelta(days=offset)
        rows = []
        for line in range(rng.randint(0, 12 * users)):
            late = rng.choice((0, 0, 0, 0, 0, 1, 2, 3, 6, 9, 29, 30, 31, 40))
            day = arrival - timedelta(days=late)
            when = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
                seconds=rng.randint(0, 86_399)
            )
            kind = rng.choice(kinds)
            rows.append(
                {
                    "event_id": f"e{offset}-{line}",
                    "user_id": f"u{rng.randint(0, users - 1)}",
                    "event_type": kind,
                    "event_time": when,
                    "product_id": rng.choice([*products, None, "p-unknown"]),
                    "amount": round(rng.uniform(0.01, 300), 2) if kind == "purchase" else None,
                    "quantity": rng.randint(1, 4),
                    "device": rng.choice(("web", "ios", "android", None, "web")),
                    "session_id": rng.choice((None, f"s{rng.randint(0, 3 * users)}")),
                    "arrival_date": arrival,
                    "_source_file": f"landing/events/{arrival}/events.jsonl",
                    "_line": line + 1,
                    "_ingested_at": ingested,
                }
            )
        write_parquet_atomic(
            pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row"),
            lake.partition_file("silver", "events", arrival.isoformat()),
        )
        if rng.random() < 0.85:
            crm = [
                {
                    "user_id": f"u{u}",
                    "signup_date": date(2024, 1, 1) + timedelta(days=u),
                    "country": rng.choice(("DE", "FR")) if u % 3 == 0 else "GB",
                    "birth_year": 1970 + u,
                    "marketing_opt_in": bool((u + offset // 5) % 2),
                    "plan": rng.choice(("free", "plus")) if u % 4 == 0 else "pro",
                    "snapshot_date": arrival,
                }
                for u in range(users)
                if rng.random() < 0.9
            ]
            write_parquet_atomic(
                pl.DataFrame(crm, schema=USER_SCHEMA, orient="row"),
                lake.partition_file("silver", "users", arrival.isoformat()),
            )
        catalogue = [
            {
                "product_id": p,
                "category": (
                    None if i == 5 else categories[(i + (offset // 7 if i % 2 else 0)) % 4]
                ),
                "brand": "acme",
                "list_price": 10.0 + i,
                "active": True,
                "snapshot_date": arrival,
            }
            for i, p in enumerate(products)
            if not (i == 3 and offset % 10 < 4)
        ]
        write_parquet_atomic(
            pl.DataFrame(catalogue, schema=PRODUCT_SCHEMA, orient="row"),
            lake.partition_file("silver", "products", arrival.isoformat()),
        )
