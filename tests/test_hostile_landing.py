"""The hand-made hostile inputs that once crashed a day, leaked into gold or vanished: each one
pinned, through the real bronze and silver assets materialized by Dagster."""

from __future__ import annotations

import gzip
import json
from datetime import date

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from refinery.assets.bronze.assets import bronze_assets
from refinery.assets.silver.assets import silver_assets
from refinery.resources import LakeResource, QualityPolicy
from refinery.resources.lake import LakePaths

DAY1, DAY2 = "2026-10-01", "2026-10-11"  # ten days apart: beyond any look-back window
USERS_HEADER = "user_id,signup_date,country,birth_year,marketing_opt_in,plan"


def event(event_id: str, **overrides) -> dict:
    return {
        "event_id": event_id,
        "user_id": "u1",
        "event_type": "purchase",
        "event_time": overrides.pop("at", "2026-10-01T10:00:00+00:00"),
        "product_id": "p1",
        "amount": 10.0,
        "device": "web",
        **overrides,
    }


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


GOOD = [dumps(event(f"g{i}")) for i in range(200)]  # keeps the quarantine rate under 5 %
BASE = dumps(event("e1", event_type="view", amount=None))[:-1]  # '{"event_id":"e1",...' no '}'

# (line, the fate the issue asks for)
HOSTILE_LINES = [
    (BASE.replace('"e1"', '"t1"') + ",}", "malformed_json"),  # trailing comma
    (BASE.replace('"e1"', '"t2"') + ',"amount":nan}', "malformed_json"),  # bare nan
    (dumps(event("t3"))[:-1].replace('"amount":10.0', '"amount":NaN') + "}", "non_finite_number"),
    (dumps(event("t4")).replace('"amount":10.0', '"amount":Infinity'), "non_finite_number"),
    (dumps(event("t5")).replace('"amount":10.0', '"amount":1e400'), "non_finite_number"),
    (dumps(event("t6")).replace('"amount":10.0', '"amount":' + "9" * 400), "non_finite_number"),
    (dumps(event("t7"))[:-1] + ',"event_id":"t7b"}', "duplicate_key"),
    (dumps(event("t8")).replace('"t8"', "1.0"), "invalid_type"),
    (dumps(event("t9", user_id=True)), "invalid_type"),
    (dumps(event("t10", user_id={"id": "u1"})), "invalid_type"),
    (dumps(event("t11", product_id=["p1"])), "invalid_type"),
    (dumps(event("t12", at="1970-01-01T00:00:00Z")), "event_time_too_old"),
]


def land(root, source: str, day: str, name: str, data: bytes) -> None:
    path = root / "landing" / source / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def users_csv(rows: list[str]) -> bytes:
    return ("\n".join([USERS_HEADER, *rows]) + "\n").encode()


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    text = "\n".join([*GOOD, *(ln for ln, _ in HOSTILE_LINES)]) + "\n"
    land(root, "events", DAY1, "a.jsonl", b"\xef\xbb\xbf" + text.encode())  # with a BOM
    land(root, "events", DAY1, "b.jsonl.gz", b'{"event_id":"plain-in-gz"}\n{"event_id":"x2"}\n')
    land(root, "events", DAY1, "c.jsonl.gz", b"")
    land(root, "events", DAY1, "d.JSONL", (dumps(event("upper-case-suffix")) + "\n").encode())
    land(root, "events", DAY1, "e.json", b'{"event_id": "not read"}\n')
    land(root, "events", DAY1, "notes.txt", b"hello\n")
    land(root, "events", DAY1, ".upload.tmp", b"partial")
    good_users = [f"u{i},2025-01-01,DE,1990,true,free" for i in range(1, 40)]
    land(
        root,
        "users",
        DAY1,
        "users.csv",
        users_csv([*good_users, "u90,2025-01-01,DE,1990,true", "u91,2025-01-01,XX,1990,true,free"]),
    )
    land(
        root,
        "products",
        DAY1,
        "products.csv",
        (
            "product_id,category,brand,list_price,active\n"
            + "".join(f"p{i},toys,acme,3.5,true\n" for i in range(1, 40))
            + "pinf,toys,acme,inf,true\npnan,toys,acme,NaN,true\n"
        ).encode(),
    )

    redelivered = [dumps(event(f"g{i}", at="2026-10-01T10:00:00+00:00")) for i in range(3)]
    conflicting = dumps(event("g3", amount=99.0))
    day2 = [dumps(event(f"n{i}", at="2026-10-11T09:00:00Z")) for i in range(100)]
    land(
        root,
        "events",
        DAY2,
        "a.jsonl.gz",
        gzip.compress(("\n".join([*day2, *redelivered, conflicting]) + "\n").encode(), mtime=0),
    )
    land(root, "users", DAY2, "users.csv", users_csv([]))  # header only
    land(
        root,
        "products",
        DAY2,
        "products.csv",
        ("product_id,category,brand,list_price,active\n" + "p1,toys,acme,3.5,true\n").encode(),
    )  # shrank from 39 valid rows to 1

    instance = DagsterInstance.ephemeral()
    resources = {"lake": LakeResource(data_dir=str(root)), "policy": QualityPolicy()}
    results = {
        day: materialize(
            [*bronze_assets, *silver_assets],
            partition_key=day,
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        for day in (DAY1, DAY2)
    }
    return LakePaths(root), results


def quarantine(paths: LakePaths, table: str, day: str) -> pl.DataFrame:
    return pl.read_parquet(paths.partition_dir("quarantine", table, day) / "part-0.parquet")


def checks(result) -> dict[tuple[str, str], bool]:
    return {
        ("/".join(e.asset_key.path), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }


def test_no_hostile_line_stops_the_day_and_each_gets_its_reason(lake):
    paths, results = lake
    assert checks(results[DAY1])[("silver/events", "row_accounting")]
    q = quarantine(paths, "events", DAY1)
    file_a = q.filter(pl.col("_source_file").str.ends_with("a.jsonl"))
    by_line = dict(zip(file_a["_line"], file_a["quarantine_reason"]))
    for n, (_, reason) in enumerate(HOSTILE_LINES, start=len(GOOD) + 1):
        assert by_line.get(n) == reason, (n, HOSTILE_LINES[n - len(GOOD) - 1])
    silver = pl.read_parquet(paths.partition_parts("silver", "events", DAY1))
    assert "g0" in silver["event_id"].to_list()  # line 1 despite the BOM
    assert silver["amount"].is_finite().all()
    assert not (paths.lake / ".staging").exists() or not any((paths.lake / ".staging").iterdir())
    assert not list(paths.lake.glob("*/*/.staging*"))


def test_files_that_are_not_what_their_name_says_keep_their_lines(lake):
    paths, results = lake
    silver = pl.read_parquet(paths.partition_parts("silver", "events", DAY1))
    assert "upper-case-suffix" in silver["event_id"].to_list()  # .JSONL is read
    bronze = pl.read_parquet(paths.partition_parts("bronze", "events", DAY1))
    fates = {
        (name.rsplit("/", 1)[-1], line): error
        for name, line, error in bronze.select("_source_file", "_line", "_parse_error").iter_rows()
    }
    assert fates[("b.jsonl.gz", 0)] == "misnamed_file"
    assert {("b.jsonl.gz", 1), ("b.jsonl.gz", 2)} <= fates.keys()  # plain text in .gz: lines kept
    assert fates[("c.jsonl.gz", 0)] == "empty_file"  # zero bytes, not "truncated_gzip"
    assert fates[("e.json", 0)] == fates[("notes.txt", 0)] == "unsupported_file"
    landing_check = next(
        e
        for e in results[DAY1].get_asset_check_evaluations()
        if e.check_name == "landing_files" and e.asset_key == AssetKey(["bronze", "events"])
    )
    assert not landing_check.passed
    description = landing_check.description
    for named in ("b.jsonl.gz", "c.jsonl.gz", "e.json", "notes.txt", ".upload.tmp"):
        assert named in description, named


def test_snapshot_rows_are_judged_line_by_line(lake):
    paths, results = lake
    q = quarantine(paths, "users", DAY1)
    reasons = dict(zip(q["_line"], q["quarantine_reason"]))
    assert reasons == {41: "wrong_field_count", 42: "invalid_country"}
    assert "line 41 has 5 field(s)" in q.filter(pl.col("_line") == 41)["quarantine_detail"].item()
    products = quarantine(paths, "products", DAY1)
    assert sorted(products["quarantine_reason"]) == ["non_finite_number", "non_finite_number"]
    assert checks(results[DAY1])[("silver/users", "snapshot_volume")]


def test_an_empty_or_shrunk_snapshot_fails_a_check_that_says_so(lake):
    _, results = lake
    evaluations = {
        ("/".join(e.asset_key.path), e.check_name): e
        for e in results[DAY2].get_asset_check_evaluations()
    }
    users = evaluations[("silver/users", "snapshot_volume")]
    assert not users.passed and "no valid rows" in users.description
    products = evaluations[("silver/products", "snapshot_volume")]
    assert not products.passed and "shrank from 39 rows" in products.description


def test_redeliveries_ten_days_later_are_duplicates_and_conflicts_are_flagged(lake):
    paths, results = lake
    silver = pl.read_parquet(paths.partition_parts("silver", "events", DAY2))
    assert silver.height == 100 and not silver["event_id"].str.starts_with("g").any()
    dups = pl.read_parquet(paths.partition_dir("quarantine", "events", DAY2) / "duplicates.parquet")
    assert dict(zip(dups["event_id"], dups["duplicate_reason"])) == {
        "g0": "duplicate_event_id",
        "g1": "duplicate_event_id",
        "g2": "duplicate_event_id",
        "g3": "conflicting_duplicate",
    }
    assert set(dups["original_arrival_date"]) == {date(2026, 10, 1)}
    assert not checks(results[DAY2])[("silver/events", "duplicate_conflicts")]
