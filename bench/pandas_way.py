"""The pandas way: the feature pipeline a team writes first, from the same landing files.

    <python with pandas> bench/pandas_way.py --landing DIR --out DIR --min-date D --max-date D
        [--memory-limit-gb 12] [--json OUT]

Tutorial style on purpose: `pd.read_json(lines=True)` per file, `concat`, a loop over as-of
dates with boolean masks, `groupby().agg` / `groupby().transform` and `merge`. Same definitions
as refinery's gold (user_daily_features, labels, training_examples), so the benchmark can check
the values are equal before it compares times. Runs in the peer environment
(bench/.venv-evidently: pandas<3, pyarrow) because the project itself does not depend on pandas.

The address space is capped with RLIMIT_AS so that running out of memory ends this process with
status "out_of_memory" instead of taking the machine down.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import date, timedelta
from pathlib import Path

OUT_OF_MEMORY_EXIT = 3
FEATURE_WINDOW_DAYS = 30
RECENCY_LOOKBACK_DAYS = 90
LABEL_HORIZON_DAYS = 7
LABEL_LATENESS_DAYS = 3

INT_FEATURES = [
    "events_1d", "events_7d", "events_30d",
    "views_1d", "views_7d", "views_30d",
    "clicks_1d", "clicks_7d", "clicks_30d",
    "add_to_carts_1d", "add_to_carts_7d", "add_to_carts_30d",
    "purchases_1d", "purchases_7d", "purchases_30d",
    "items_purchased_30d",
]  # fmt: skip
COLUMNS = [
    "user_id", "as_of_date", *INT_FEATURES,
    "spend_1d", "spend_7d", "spend_30d", "avg_order_value_30d",
    "sessions_7d", "sessions_30d", "active_days_30d", "distinct_products_30d",
    "distinct_categories_30d", "days_since_last_event", "days_since_last_purchase",
    "view_to_cart_rate_30d", "cart_to_purchase_rate_30d", "share_mobile_30d",
    "favourite_category_30d", "main_device_30d",
    "tenure_days", "age", "marketing_opt_in", "plan", "country",
]  # fmt: skip
NULLABLE_INTS = ["days_since_last_purchase", "tenure_days", "age", "marketing_opt_in"]


def load_events(pd, landing: Path, max_date: date):
    frames = []
    for path in sorted(landing.glob("events/*/*.jsonl*")):
        arrival = date.fromisoformat(path.parent.name)
        if arrival > max_date:
            continue
        df = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
        df["arrival_date"] = pd.Timestamp(arrival)
        frames.append(df)
    events = pd.concat(frames, ignore_index=True)
    for column in ["event_id", "user_id", "product_id", "session_id"]:
        events[column] = events[column].str.strip().replace("", None)
    events["event_type"] = events["event_type"].str.strip().str.lower()
    events["device"] = events["device"].str.strip().str.lower()
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True, format="ISO8601")
    events["event_date"] = events["event_time"].dt.tz_localize(None).dt.normalize()
    events["amount"] = events["amount"].where(events["event_type"] == "purchase")
    events["quantity"] = events["quantity"].fillna(1)
    # a re-delivered event counts once, at its first arrival
    events = events.sort_values("arrival_date", kind="stable")
    return events.drop_duplicates("event_id", keep="first")


def load_snapshots(pd, landing: Path, table: str):
    frames = []
    for path in sorted(landing.glob(f"{table}/*/{table}.csv")):
        df = pd.read_csv(path, dtype=str)
        df.columns = [c.strip().lower() for c in df.columns]
        df = df.apply(lambda s: s.str.strip())
        df["snapshot_date"] = pd.Timestamp(date.fromisoformat(path.parent.name))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def latest_snapshot(snapshots, as_of):
    dates = snapshots.loc[snapshots["snapshot_date"] <= as_of, "snapshot_date"]
    if dates.empty:
        return snapshots.iloc[0:0]
    return snapshots[snapshots["snapshot_date"] == dates.max()]


def features_as_of(pd, np, events, users, products, as_of):
    known = events[
        (events["arrival_date"] <= as_of)
        & (events["event_date"] <= as_of)
        & (events["event_date"] > as_of - pd.Timedelta(days=FEATURE_WINDOW_DAYS))
    ].copy()
    if known.empty:
        return None
    catalogue = latest_snapshot(products, as_of)[["product_id", "category"]].copy()
    catalogue["category"] = catalogue["category"].str.lower()
    known = known.merge(catalogue, on="product_id", how="left")
    known["days_ago"] = (as_of - known["event_date"]).dt.days
    known["d1"] = known["days_ago"] < 1
    known["d7"] = known["days_ago"] < 7
    for kind, name in [
        ("view", "views"),
        ("click", "clicks"),
        ("add_to_cart", "add_to_carts"),
        ("purchase", "purchases"),
    ]:
        is_kind = known["event_type"] == kind
        known[f"{name}_1d"] = is_kind & known["d1"]
        known[f"{name}_7d"] = is_kind & known["d7"]
        known[f"{name}_30d"] = is_kind
    purchase = known["event_type"] == "purchase"
    known["items"] = known["quantity"].where(purchase, 0)
    known["spend_30d"] = known["amount"].where(purchase, 0.0)
    known["spend_7d"] = known["spend_30d"].where(known["d7"], 0.0)
    known["spend_1d"] = known["spend_30d"].where(known["d1"], 0.0)
    known["session_7d"] = known["session_id"].where(known["d7"])
    known["mobile"] = known["device"].isin(["ios", "android"])
    # most frequent category / device per user, ties to the alphabetically first
    known["category_n"] = known.groupby(["user_id", "category"])["event_id"].transform("size")
    known["device_n"] = known.groupby(["user_id", "device"])["event_id"].transform("size")

    per_user = known.groupby("user_id")
    out = pd.DataFrame(
        {
            "events_1d": per_user["d1"].sum(),
            "events_7d": per_user["d7"].sum(),
            "events_30d": per_user.size(),
            **{
                f"{name}_{w}": per_user[f"{name}_{w}"].sum()
                for name in ["views", "clicks", "add_to_carts", "purchases"]
                for w in ["1d", "7d", "30d"]
            },
            "items_purchased_30d": per_user["items"].sum(),
            "spend_1d": per_user["spend_1d"].sum(),
            "spend_7d": per_user["spend_7d"].sum(),
            "spend_30d": per_user["spend_30d"].sum(),
            "sessions_7d": per_user["session_7d"].nunique(),
            "sessions_30d": per_user["session_id"].nunique(),
            "active_days_30d": per_user["event_date"].nunique(),
            "distinct_products_30d": per_user["product_id"].nunique(),
            "distinct_categories_30d": per_user["category"].nunique(),
            "days_since_last_event": per_user["days_ago"].min(),
            "events_with_device": per_user["device"].count(),
            "mobile_events": per_user["mobile"].sum(),
        }
    )
    out["avg_order_value_30d"] = out["spend_30d"] / out["purchases_30d"].replace(0, np.nan)
    out["view_to_cart_rate_30d"] = out["add_to_carts_30d"] / out["views_30d"].replace(0, np.nan)
    out["cart_to_purchase_rate_30d"] = out["purchases_30d"] / out["add_to_carts_30d"].replace(
        0, np.nan
    )
    out["share_mobile_30d"] = out["mobile_events"] / out["events_with_device"].replace(0, np.nan)
    for column, count in [("category", "category_n"), ("device", "device_n")]:
        ranked = known.dropna(subset=[column]).sort_values(
            ["user_id", count, column], ascending=[True, False, True]
        )
        top = ranked.drop_duplicates("user_id").set_index("user_id")[column]
        out[{"category": "favourite_category_30d", "device": "main_device_30d"}[column]] = top

    purchases = events[
        (events["event_type"] == "purchase")
        & (events["arrival_date"] <= as_of)
        & (events["event_date"] <= as_of)
        & (events["event_date"] > as_of - pd.Timedelta(days=RECENCY_LOOKBACK_DAYS))
    ]
    last_purchase = purchases.groupby("user_id")["event_date"].max()
    out["days_since_last_purchase"] = (as_of - last_purchase.reindex(out.index)).dt.days

    crm = latest_snapshot(users, as_of).set_index("user_id")
    crm = crm[~crm.index.duplicated()].reindex(out.index)
    signup = pd.to_datetime(crm["signup_date"])
    out["tenure_days"] = (as_of - signup).dt.days
    out["age"] = as_of.year - pd.to_numeric(crm["birth_year"])
    out["marketing_opt_in"] = (
        crm["marketing_opt_in"]
        .str.lower()
        .map({"true": 1, "1": 1, "yes": 1, "false": 0, "0": 0, "no": 0})
    )
    out["plan"] = crm["plan"].str.lower()
    out["country"] = crm["country"].str.upper()
    out = out.reset_index()
    out["as_of_date"] = as_of
    return out


def labels_as_of(pd, events, population, as_of):
    purchases = events[
        (events["event_type"] == "purchase")
        & (events["event_date"] > as_of)
        & (events["event_date"] <= as_of + pd.Timedelta(days=LABEL_HORIZON_DAYS))
        & (
            events["arrival_date"]
            <= as_of + pd.Timedelta(days=LABEL_HORIZON_DAYS + LABEL_LATENESS_DAYS)
        )
    ]
    return population["user_id"].isin(purchases["user_id"]).astype("int32")


def build(landing: Path, out_dir: Path, min_date: date, max_date: date) -> dict:
    started = time.perf_counter()
    import numpy as np
    import pandas as pd

    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    delay = LABEL_HORIZON_DAYS + LABEL_LATENESS_DAYS
    events = load_events(pd, landing, max_date)
    users = load_snapshots(pd, landing, "users")
    products = load_snapshots(pd, landing, "products")
    feature_days = [min_date + timedelta(days=i) for i in range((max_date - min_date).days + 1)]
    label_days = [d - timedelta(days=delay) for d in feature_days]
    features, examples = [], []
    for day in sorted(set(feature_days) | set(label_days)):
        as_of = pd.Timestamp(day)
        frame = features_as_of(pd, np, events, users, products, as_of)
        if frame is None:
            continue
        if day in feature_days:
            features.append(frame)
        if day in label_days:
            examples.append(frame.assign(label=labels_as_of(pd, events, frame, as_of)))

    def finish(frames, extra):
        table = pd.concat(frames, ignore_index=True)[COLUMNS + extra]
        for column in INT_FEATURES + [
            "sessions_7d", "sessions_30d", "active_days_30d", "distinct_products_30d",
            "distinct_categories_30d", "days_since_last_event",
        ]:  # fmt: skip
            table[column] = table[column].astype("int64")
        for column in NULLABLE_INTS:
            table[column] = table[column].astype("Int64")
        table["as_of_date"] = table["as_of_date"].dt.date
        return table

    out_dir.mkdir(parents=True, exist_ok=True)
    finish(features, []).to_parquet(out_dir / "user_daily_features.parquet", index=False)
    if examples:
        finish(examples, ["label"]).to_parquet(out_dir / "training_examples.parquet", index=False)
    return {"import_seconds": round(import_seconds, 3), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--min-date", type=date.fromisoformat, required=True)
    parser.add_argument("--max-date", type=date.fromisoformat, required=True)
    parser.add_argument("--memory-limit-gb", type=float, default=12.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    limit = int(args.memory_limit_gb * 1024**3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = {
            "stage": "pandas",
            "status": "ok",
            **build(args.landing, args.out, args.min_date, args.max_date),
        }
        code = 0
    except MemoryError:
        result = {
            "stage": "pandas",
            "status": "out_of_memory",
            "detail": f"MemoryError under RLIMIT_AS = {args.memory_limit_gb} GiB",
        }
        code = OUT_OF_MEMORY_EXIT
    result["seconds"] = round(result.get("seconds", 0.0), 3)
    text = json.dumps(result)
    if args.json:
        Path(args.json).write_text(text)
    else:
        sys.stdout.write(text + "\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
