"""The online record encoding: every Parquet value comes back from the served JSON bit for bit."""

import math
import struct
from datetime import date

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refinery.online.records import cold_start_body, encode_records, feature_schema

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
rows = st.lists(
    st.tuples(
        st.none() | finite,
        st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.none() | st.text(max_size=12),
    ),
    min_size=1,
    max_size=30,
)


def bits(value):
    return struct.pack("<d", value) if isinstance(value, float) else value


@settings(max_examples=200, deadline=None)
@given(rows)
def test_values_round_trip_exactly(values):
    frame = pl.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(len(values))],
            "as_of_date": [date(2025, 1, 5)] * len(values),
            "spend_7d": [v[0] for v in values],
            "events_7d": [v[1] for v in values],
            "plan": [v[2] for v in values],
        },
        schema={
            "user_id": pl.String,
            "as_of_date": pl.Date,
            "spend_7d": pl.Float64,
            "events_7d": pl.Int64,
            "plan": pl.String,
        },
    )
    records = encode_records(frame, "training_set@v2.0.0")
    for (user, as_of, digest, body), row in zip(records, frame.to_dicts(), strict=True):
        served = orjson.loads(body)
        assert served["user_id"] == user == row["user_id"] and as_of == "2025-01-05"
        assert served["known"] is True and served["training_set_version"] == "training_set@v2.0.0"
        assert list(served["features"]) == ["spend_7d", "events_7d", "plan"]
        for name in ("spend_7d", "events_7d", "plan"):
            got, want = served["features"][name], row[name]
            assert type(got) is type(want) and bits(got) == bits(want), (name, got, want)
        assert len(digest) == 16


def test_a_non_finite_float_cannot_pass_for_a_value():
    """orjson writes NaN as null: the parity check then sees null where gold has NaN (mismatch),
    instead of a made-up number."""
    frame = pl.DataFrame(
        {"user_id": ["u"], "as_of_date": [date(2025, 1, 5)], "spend_7d": [math.nan]}
    )
    served = orjson.loads(encode_records(frame, None)[0][3])
    assert served["features"]["spend_7d"] is None


def test_schema_and_cold_start_follow_the_mart():
    from refinery.contracts.gold import declared_columns

    declared = declared_columns("user_daily_features")
    schema = pl.Schema({c.name: c.dtype for c in declared})
    described = feature_schema(schema)
    assert [f["name"] for f in described] == [c.name for c in declared][
        2:
    ]  # the key is not a feature
    by_name = {f["name"]: f for f in described}
    assert by_name["spend_7d"]["json_type"] == "number"
    assert by_name["events_7d"]["json_type"] == "integer"
    assert by_name["plan"]["json_type"] == "string"
    assert not by_name["events_30d"]["nullable"] and by_name["plan"]["nullable"]
    assert "7 days" in by_name["spend_7d"]["description"]  # dbt's docs block, not a doc() reference
    with pytest.raises(ValueError, match="lacks declared columns"):
        feature_schema(pl.Schema({"user_id": pl.String, "as_of_date": pl.Date}))
    cold = cold_start_body("x", ["spend_7d", "plan"], None)
    assert cold["known"] is False and cold["features"] == {"spend_7d": None, "plan": None}
