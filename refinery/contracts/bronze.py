"""Bronze contracts: every landed line, as received, with ingestion metadata."""

from __future__ import annotations

import polars as pl

from refinery.contracts.rules import UTC_US, Column, Contract

EVENT_FIELDS = (
    "event_id",
    "user_id",
    "event_type",
    "event_time",
    "product_id",
    "amount",
    "quantity",
    "device",
    "session_id",
)
USER_FIELDS = ("user_id", "signup_date", "country", "birth_year", "marketing_opt_in", "plan")
PRODUCT_FIELDS = ("product_id", "category", "brand", "list_price", "active")

_META = (
    Column(
        "_parse_error",
        pl.String(),
        True,
        "why the line cannot become a typed row (null: it can); see LINE_ERRORS / FILE_ERRORS",
    ),
    Column("_parse_detail", pl.String(), True, "human-readable detail of the parse error"),
    Column("_source_file", pl.String(), False, "landing file, relative to the data root"),
    Column("_line", pl.Int64(), False, "1-based line in the file (0: a file-level record)"),
    Column("_ingested_at", UTC_US, False, "when bronze ingested it"),
    Column("_arrival_date", pl.Date(), False, "the landing folder's date (partition key)"),
)

_lineage_ok = {
    "negative_line_number": pl.col("_line") >= 0,
    "parse_error_without_code": pl.col("_parse_detail").is_null()
    | pl.col("_parse_error").is_not_null(),
}


def _text_columns(fields: tuple[str, ...], what: str) -> tuple[Column, ...]:
    return tuple(Column(f, pl.String(), True, f"{what} field `{f}` as received") for f in fields)


_RAW = Column("_raw", pl.String(), False, "the line as received (invalid UTF-8 replaced by U+FFFD)")

BRONZE_EVENTS = Contract(
    name="bronze_events",
    columns=(
        _RAW,
        *_text_columns(EVENT_FIELDS, "event"),
        *_META,
    ),
    constraints=_lineage_ok,
)
BRONZE_USERS = Contract(
    name="bronze_users",
    columns=(_RAW, *_text_columns(USER_FIELDS, "CRM"), *_META),
    constraints=_lineage_ok,
)
BRONZE_PRODUCTS = Contract(
    name="bronze_products",
    columns=(_RAW, *_text_columns(PRODUCT_FIELDS, "catalogue"), *_META),
    constraints=_lineage_ok,
)
BRONZE_CONTRACTS = {"events": BRONZE_EVENTS, "users": BRONZE_USERS, "products": BRONZE_PRODUCTS}
SOURCE_FIELDS = {"events": EVENT_FIELDS, "users": USER_FIELDS, "products": PRODUCT_FIELDS}
