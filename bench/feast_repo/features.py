"""The Feast side of bench/bench_serving.py: the same gold feature table as a Feast feature view.

Read by `feast apply` in a temp copy of this folder; the bench writes feature_store.yaml beside it
(Redis on the bench's loopback port) and sets FEAST_BENCH_PARQUET / FEAST_BENCH_FEATURES.
"""

import json
import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

TYPES = {"integer": Int64, "number": Float64, "string": String}

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)

source = FileSource(
    name="user_daily_features_source",
    path=os.environ["FEAST_BENCH_PARQUET"],
    timestamp_field="event_timestamp",
)

features = json.loads(os.environ["FEAST_BENCH_FEATURES"])  # [[name, json_type], ...]

user_daily_features = FeatureView(
    name="user_daily_features",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[Field(name=name, dtype=TYPES[kind]) for name, kind in features],
    online=True,
    source=source,
)

user_features_service = FeatureService(name="user_features", features=[user_daily_features])
