"""Silver contracts: typed, normalised, validated tables (DESIGN.md, "Landing contract")."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from refinery.contracts.iso3166 import ALPHA2
from refinery.contracts.rules import UTC_US, Column, Contract

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
DEVICES = ("web", "ios", "android")
PLANS = ("free", "plus", "pro")
NEEDS_PRODUCT = ("view", "add_to_cart", "purchase")

LINEAGE = (
    Column("_source_file", pl.String(), False, "landing file, relative to the data root"),
    Column("_line", pl.Int64(), False, "1-based line in the landing file (0: file-level record)"),
    Column("_ingested_at", UTC_US, False, "when bronze ingested the line"),
)

_end_of_arrival_day = (
    pl.col("arrival_date").cast(pl.Datetime("us")) + pl.duration(days=1)
).dt.replace_time_zone("UTC")

# The oldest event_time an event may have: not before this instant, and not more than this many
# days before the day it arrived (a clock reset to 1970, a default timestamp, a replay of an
# ancient backup). Both are QualityPolicy settings; these are their defaults.
DEFAULT_MIN_EVENT_TIME = "2000-01-01"
DEFAULT_MAX_EVENT_AGE_DAYS = 365


def events_contract(
    min_event_time: str = DEFAULT_MIN_EVENT_TIME,
    max_event_age_days: int = DEFAULT_MAX_EVENT_AGE_DAYS,
) -> Contract:
    """The silver events contract, with its event_time lower bounds."""
    floor = datetime.combine(date.fromisoformat(min_event_time), datetime.min.time(), UTC)
    oldest_for_arrival = (
        pl.col("arrival_date").cast(pl.Datetime("us")) - pl.duration(days=max_event_age_days)
    ).dt.replace_time_zone("UTC")
    return Contract(
        name="silver_events",
        columns=(
            Column("event_id", pl.String(), False, "globally unique event id"),
            Column("user_id", pl.String(), False, "who acted"),
            Column("event_type", pl.String(), False, "view | click | add_to_cart | purchase"),
            Column("event_time", UTC_US, False, "when it happened, UTC"),
            Column("product_id", pl.String(), True, "required except for click"),
            Column(
                "amount",
                pl.Float64(),
                True,
                "USD, required, finite and >= 0 for purchase, else null",
            ),
            Column("quantity", pl.Int32(), False, ">= 1, 1 when absent"),
            Column("device", pl.String(), True, "web | ios | android | null"),
            Column("session_id", pl.String(), True, "optional session id"),
            Column("arrival_date", pl.Date(), False, "the day the event landed (partition key)"),
            *LINEAGE,
        ),
        constraints={
            "unknown_event_type": pl.col("event_type").is_in(list(EVENT_TYPES)),
            "missing_product_id": pl.col("event_type").is_in(list(NEEDS_PRODUCT)).not_()
            | pl.col("product_id").is_not_null(),
            "missing_amount": (pl.col("event_type") != "purchase") | pl.col("amount").is_not_null(),
            "non_finite_number": pl.col("amount").is_null() | pl.col("amount").is_finite(),
            "negative_amount": pl.col("amount").is_null() | (pl.col("amount") >= 0),
            "invalid_quantity": pl.col("quantity") >= 1,
            "invalid_device": pl.col("device").is_null() | pl.col("device").is_in(list(DEVICES)),
            "future_event_time": pl.col("event_time") < _end_of_arrival_day,
            "event_time_too_old": (pl.col("event_time") >= floor)
            & (pl.col("event_time") >= oldest_for_arrival),
        },
        unique=("event_id",),
    )


EVENTS = events_contract()

USERS = Contract(
    name="silver_users",
    columns=(
        Column("user_id", pl.String(), False, "CRM user id, unique within a snapshot"),
        Column("signup_date", pl.Date(), False, "day of signup"),
        Column("country", pl.String(), False, "ISO-3166 alpha-2, upper case"),
        Column("birth_year", pl.Int32(), False, "year of birth"),
        Column("marketing_opt_in", pl.Boolean(), False, "consented to marketing"),
        Column("plan", pl.String(), False, "free | plus | pro"),
        Column("snapshot_date", pl.Date(), False, "arrival date of the snapshot (partition key)"),
        *LINEAGE,
    ),
    constraints={
        "invalid_country": pl.col("country").is_in(sorted(ALPHA2)),
        "invalid_plan": pl.col("plan").is_in(list(PLANS)),
        "invalid_birth_year": pl.col("birth_year").is_between(
            1900, pl.col("snapshot_date").dt.year()
        ),
        "future_signup_date": pl.col("signup_date") <= pl.col("snapshot_date"),
    },
    unique=("user_id",),
)

PRODUCTS = Contract(
    name="silver_products",
    columns=(
        Column("product_id", pl.String(), False, "catalogue id, unique within a snapshot"),
        Column("category", pl.String(), False, "product category"),
        Column("brand", pl.String(), True, "brand"),
        Column("list_price", pl.Float64(), False, "USD, finite, >= 0"),
        Column("active", pl.Boolean(), False, "sold at snapshot time"),
        Column("snapshot_date", pl.Date(), False, "arrival date of the snapshot (partition key)"),
        *LINEAGE,
    ),
    constraints={
        "non_finite_number": pl.col("list_price").is_finite(),
        "negative_list_price": pl.col("list_price") >= 0,
    },
    unique=("product_id",),
)

CONTRACTS = {"events": EVENTS, "users": USERS, "products": PRODUCTS}

# Reasons given before a row is typed (bronze's line and file errors, missing fields and cast
# failures); with the constraint names above and the duplicate reasons, the complete vocabulary
# of rows outside silver.
PARSE_REASONS = (
    "empty_file",
    "truncated_gzip",
    "corrupt_gzip",
    "misnamed_file",
    "unsupported_file",
    "invalid_utf8",
    "empty_line",
    "malformed_json",
    "non_finite_number",
    "duplicate_key",
    "not_a_json_object",
    "malformed_csv",
    "wrong_field_count",
    "missing_column",
    "duplicate_column",
    "missing_required_field",
    "invalid_type",
    "invalid_event_time",
    "invalid_date",
    "invalid_boolean",
)
# Why a valid row was dropped as a duplicate (duplicates.parquet, `duplicate_reason`).
DUPLICATE_REASONS = (
    "duplicate_event_id",  # the same event again: identical content, the first arrival is kept
    "conflicting_duplicate",  # the same event_id with different content: counted and flagged
    "duplicate_snapshot_row",  # snapshots: a key twice in one snapshot, same content: first kept
)


def parse_event_time(text: pl.Expr) -> pl.Expr:
    """The contract's reading of `event_time` text: ISO-8601 with an offset or Z → UTC instant;
    null when unparseable or without an offset. Bronze's stats and silver's typing share it, so
    it lives with the contract, below both layers."""
    return text.str.replace(r"[zZ]$", "+00:00").str.to_datetime(
        format="%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_zone="UTC", time_unit="us"
    )
