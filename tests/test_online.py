"""online/user_features and the serving API on a real gold lake (one dbt build for the module).

Story: gold over knowledge dates 01-01..01-15; the online asset runs for 01-01..01-12 (run 1),
then 01-13..01-15 (run 2, incremental). Expectations are computed from the gold Parquet marts
independently of the online code (the latest row per user, with polars).
"""

import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta

import httpx
import polars as pl
import pytest
from dagster import materialize
from fastapi.testclient import TestClient

from refinery.assets.gold.export import mart_file
from refinery.assets.online import PARITY_CHECK, online_assets
from refinery.online.client import FeatureClient, FeatureServiceError, features_as_of
from refinery.online.parity import check_parity
from refinery.online.records import FEATURE_MART, mart_path
from refinery.online.resource import OnlineStoreResource
from refinery.online.server import create_app
from refinery.online.store import SQLITE_FILE, open_store
from refinery.online.sync import sync_dates
from refinery.resources import LakeResource
from refinery.resources.registry import DvcRegistry
from tests.gold_fixtures import FIRST_DAY
from tests.online_fixtures import (
    RedisServer,
    build_gold,
    free_port,
    range_tags,
    write_crowd_silver,
)
from tests.test_registry import training_set

pytestmark = pytest.mark.slow

LAST = date(2025, 2, 10)
SPLIT = date(2025, 2, 5)
DAY = timedelta(days=1)
VERSION = "training_set@v1.0.0"


def run_online(root, first, last, url=None, raise_on_error=True):
    return materialize(
        online_assets,
        resources={
            "lake": LakeResource(data_dir=str(root)),
            "online_store": OnlineStoreResource(url=url),
        },
        tags=range_tags(first, last),
        raise_on_error=raise_on_error,
    )


def metadata(result):
    events = result.get_asset_materialization_events()
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def check_of(result):
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == PARITY_CHECK
    return evaluation


def all_marts(root) -> pl.DataFrame:
    return pl.read_parquet(str(root / "lake" / "gold" / FEATURE_MART / "*" / "data.parquet"))


def latest_rows(frame: pl.DataFrame, through: date) -> dict[str, dict]:
    frame = frame.filter(pl.col("as_of_date") <= through)
    latest = frame.sort("as_of_date").group_by("user_id").last()
    return {row["user_id"]: row for row in latest.to_dicts()}


def stored_bodies(root) -> dict[str, bytes]:
    with sqlite3.connect(root / SQLITE_FILE) as conn:
        return {u: bytes(b) for u, b in conn.execute("select user_id, body from features")}


def exact(a, b) -> bool:
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("online_lake")
    with pytest.MonkeyPatch.context() as env:
        write_crowd_silver(root)
        build_gold(root, FIRST_DAY, LAST, env)
        env.delenv("REFINERY_ONLINE_STORE", raising=False)
        run1 = run_online(root, FIRST_DAY, SPLIT)
        after_run1 = stored_bodies(root)
        # a training set is published between the runs: run 2's records say which
        registry = DvcRegistry(
            registry_dir=str(root / "registry"), remote_url=str(root / "dvc-remote")
        )
        registry.snapshot(training_set(root / "ts-build", seed=1).directory, lineage="online")
        run2 = run_online(root, SPLIT + DAY, LAST)
        yield {
            "root": root,
            "run1": run1,
            "run2": run2,
            "after_run1": after_run1,
            "marts": all_marts(root),
        }


@pytest.fixture
def client(lake):
    store = open_store("sqlite", lake["root"], readonly=True)
    with TestClient(create_app(store, lake["root"] / "lake" / "gold")) as http:
        yield http
    store.close()


def test_store_holds_the_latest_gold_vector_of_every_user(lake, client):
    expected = latest_rows(lake["marts"], LAST)
    assert len(expected) > 100
    stored = stored_bodies(lake["root"])
    assert set(stored) == set(expected)
    for user, row in expected.items():
        body = client.get(f"/features/{user}").json()
        assert body["known"] is True and body["as_of_date"] == row["as_of_date"].isoformat()
        gold = {k: v for k, v in row.items() if k not in ("user_id", "as_of_date")}
        assert list(body["features"]) == list(gold)  # same names, same order
        for name, value in gold.items():
            assert exact(body["features"][name], value), (user, name, body["features"][name])


def test_runs_are_incremental_and_report_what_they_wrote(lake):
    marts = lake["marts"]
    run1, run2 = metadata(lake["run1"]), metadata(lake["run2"])
    assert run1["rows_written"] == run1["users_new"] == len(latest_rows(marts, SPLIT))
    active_late = set(
        marts.filter(pl.col("as_of_date") > SPLIT).get_column("user_id").unique().to_list()
    )
    assert run2["rows_written"] == len(active_late)
    assert 0 < run2["rows_written"] < len(latest_rows(marts, LAST))
    before, after = lake["after_run1"], stored_bodies(lake["root"])
    untouched = set(after) - active_late
    assert untouched and all(after[u] == before[u] for u in untouched)
    assert run1["training_set_version"] == "none"
    assert run2["training_set_version"] == VERSION
    for user, body in after.items():
        version = json.loads(body)["training_set_version"]
        assert version == (None if user in untouched else VERSION)
    assert run2["store_users"] == len(after)
    assert run2["store_size_bytes"] > 0
    assert run2["watermark"] == LAST.isoformat()
    assert run2["freshness_hours"] > 0
    assert run2["users_changed"] + run2["users_unchanged"] <= run2["rows_read"]
    for run in (lake["run1"], lake["run2"]):
        evaluation = check_of(run)
        assert evaluation.passed
        check = {k: v.value for k, v in evaluation.metadata.items()}
        assert check["mismatches"] == 0 and check["compared_values"] > 1000


def test_rerun_writes_nothing_and_an_old_partition_cannot_move_users_back(lake, tmp_path):
    root = lake["root"]
    before = stored_bodies(root)
    store = open_store("sqlite", root)
    try:
        again = sync_dates(store, root / "lake" / "gold", [SPLIT + DAY, LAST], VERSION)
        assert again.users_written == 0 and again.users_unchanged > 0
        old = sync_dates(store, root / "lake" / "gold", [date(2025, 1, 5)], VERSION)
        assert old.users_written == 0 and old.users_skipped_newer > 0
    finally:
        store.close()
    assert stored_bodies(root) == before


def test_schema_is_the_marts_contract(lake, client):
    mart = pl.read_parquet(mart_file(lake["root"] / "lake" / "gold", FEATURE_MART, LAST))
    body = client.get("/schema").json()
    assert client.get("/features").json() == body
    names = [f["name"] for f in body["features"]]
    assert names == [c for c in mart.columns if c not in ("user_id", "as_of_date")]
    types = {f["name"]: f["type"] for f in body["features"]}
    assert types["spend_7d"] == "Float64" and types["plan"] == "String"
    assert types["events_7d"] == "Int64"
    assert all(f["description"] for f in body["features"])
    assert body["watermark"] == LAST.isoformat()


def test_unknown_users_get_nulls_never_zeros(lake, client):
    response = client.get("/features/nobody")
    assert response.status_code == 404
    body = response.json()
    assert body["known"] is False and body["as_of_date"] is None
    assert len(body["features"]) > 30 and all(v is None for v in body["features"].values())
    batch = client.post("/features", json={"user_ids": ["u1", "nobody", "u1"]}).json()["results"]
    assert [b["user_id"] for b in batch] == ["u1", "nobody", "u1"]
    assert [b["known"] for b in batch] == [True, False, True]
    assert all(v is None for v in batch[1]["features"].values())


def test_batch_equals_single_and_carries_freshness(lake, client):
    users = sorted(latest_rows(lake["marts"], LAST))[:300]
    batch = client.post("/features", json={"user_ids": users}).json()["results"]
    for user, body in zip(users, batch, strict=True):
        single = client.get(f"/features/{user}").json()
        assert without_freshness(body) == without_freshness(single)
        assert abs(body["freshness_seconds"] - single["freshness_seconds"]) <= 1
        expected = (date.today() - date.fromisoformat(body["as_of_date"])).days - 1
        assert math.isclose(body["freshness_seconds"] / 86400, expected, abs_tol=1.01)


def test_bad_requests_are_clear_4xx(client):
    cases = [
        client.post("/features", json={"user_ids": [f"u{i}" for i in range(1001)]}),
        client.post("/features", json={"user_ids": []}),
        client.post("/features", json={"users": ["u1"]}),
        client.post(
            "/features", content=b"{not json", headers={"content-type": "application/json"}
        ),
        client.post("/features", json={"user_ids": ["u1"], "as_of": "2025-13-40"}),
        client.get("/features/u1", params={"as_of": "yesterday"}),
        client.get("/features/" + "x" * 300),
    ]
    for response in cases:
        assert response.status_code == 422, response.text
        assert "Traceback" not in response.text and response.json()["detail"]
    assert "user_ids" in cases[0].json()["detail"]
    outside = client.get("/features/u1", params={"as_of": "2030-01-01"})
    assert outside.status_code == 404 and "2030-01-01" in outside.json()["detail"]


def test_point_in_time_answers_come_from_that_days_mart(lake, client):
    marts = lake["marts"]
    for as_of in (date(2025, 1, 3), date(2025, 1, 9)):
        day = marts.filter(pl.col("as_of_date") == as_of)
        users = day.get_column("user_id").to_list()[:50] + ["nobody"]
        batch = client.post("/features", json={"user_ids": users, "as_of": as_of.isoformat()})
        results = batch.json()["results"]
        rows = {r["user_id"]: r for r in day.to_dicts()}
        for user, body in zip(users, results, strict=True):
            if user == "nobody":
                assert body["known"] is False
                continue
            assert body["as_of_date"] == as_of.isoformat()
            for name, value in body["features"].items():
                assert exact(value, rows[user][name])
        single = client.get(f"/features/{users[0]}", params={"as_of": as_of.isoformat()}).json()
        assert single == results[0]


def test_health_and_metrics(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["store"] == "sqlite"
    assert health["watermark"] == LAST.isoformat() and health["users"] > 100
    assert health["training_set_version"] == VERSION
    for _ in range(5):
        client.get("/features/u1")
    client.get("/features/nobody")
    routes = client.get("/metrics").json()["routes"]
    single = routes["GET /features/{user_id}"]
    assert single["by_status"]["200"] >= 5 and single["by_status"]["404"] >= 1
    assert 0 < single["latency_ms"]["p50"] <= single["latency_ms"]["p99"]


def test_missing_store_is_a_503_that_says_so(tmp_path):
    store = open_store("sqlite", tmp_path, readonly=True)
    with TestClient(create_app(store, tmp_path / "lake" / "gold")) as http:
        for response in (
            http.get("/features/u1"),
            http.get("/health"),
            http.post("/features", json={"user_ids": ["u1"]}),
        ):
            assert response.status_code == 503
            assert "materialize online/user_features" in response.json()["detail"]


def test_parity_check_fails_when_a_stored_value_drifts(lake, tmp_path):
    """Copy the lake's store, nudge one float by one ulp in the copy, rerun: the check blocks."""
    root = lake["root"]
    store_copy = tmp_path / "store.sqlite"
    with sqlite3.connect(root / SQLITE_FILE) as src, sqlite3.connect(store_copy) as dst:
        src.backup(dst)
    marts = lake["marts"]
    victim_row = marts.filter((pl.col("as_of_date") == LAST) & (pl.col("spend_30d") > 0)).row(
        0, named=True
    )
    victim, value = victim_row["user_id"], victim_row["spend_30d"]
    with sqlite3.connect(store_copy) as conn:
        [(body,)] = conn.execute("select body from features where user_id = ?", (victim,))
        nudged = bytes(body).replace(
            f'"spend_30d":{value!r}'.encode(),
            f'"spend_30d":{math.nextafter(value, 1e9)!r}'.encode(),
        )
        assert nudged != bytes(body)
        conn.execute("update features set body = ? where user_id = ?", (nudged, victim))
    result = run_online(root, LAST, LAST, url=f"sqlite:///{store_copy}", raise_on_error=False)
    assert not result.success  # blocking
    evaluation = check_of(result)
    assert not evaluation.passed
    check = {k: v.value for k, v in evaluation.metadata.items()}
    assert check["mismatches"] == 1
    assert victim in check["mismatch_examples"] and "spend_30d" in check["mismatch_examples"]


def test_a_killed_write_leaves_the_store_as_it_was(lake, tmp_path):
    """SIGKILL between the rows and the commit: readers see the old store, a rerun completes."""
    root = lake["root"]
    target = tmp_path / "store.sqlite"
    store = open_store(f"sqlite:///{target}", root)
    sync_dates(store, root / "lake" / "gold", [date(2025, 1, d) for d in range(1, 8)], None)
    store.close()
    before = stored_bodies_at(target)
    script = (
        "import sys; from datetime import date; from pathlib import Path;"
        "from refinery.online.store import open_store; from refinery.online.sync import sync_dates;"
        f"s = open_store('sqlite:///{target}', Path('{root}'));"
        f"sync_dates(s, Path('{root}') / 'lake' / 'gold', [date(2025, 1, d) for d in range(8, 16)], None)"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env={**_env(), "REFINERY_KILL_AT": "online.sqlite_before_commit"},
    )
    assert killed.returncode == -9
    assert stored_bodies_at(target) == before
    finished = subprocess.run([sys.executable, "-c", script], check=False, env=_env())
    assert finished.returncode == 0
    uninterrupted = open_store(f"sqlite:///{tmp_path / 'whole.sqlite'}", root)
    sync_dates(
        uninterrupted, root / "lake" / "gold", [date(2025, 1, d) for d in range(1, 16)], None
    )
    uninterrupted.close()
    after = stored_bodies_at(target)
    assert after != before
    assert after == stored_bodies_at(tmp_path / "whole.sqlite")


def stored_bodies_at(path) -> dict[str, bytes]:
    with sqlite3.connect(path) as conn:
        return {u: bytes(b) for u, b in conn.execute("select user_id, body from features")}


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "REFINERY_KILL_AT"}


def test_mart_path_is_golds_layout(tmp_path):
    for day in (date(2025, 1, 1), date(2026, 12, 31)):
        assert mart_path(tmp_path, day) == mart_file(tmp_path, FEATURE_MART, day)


# --- Redis: the production store, a real redis-server on a free loopback port -----------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def without_freshness(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "freshness_seconds"}


def test_redis_store_serves_what_sqlite_serves(lake, redis_server, client):
    root = lake["root"]
    first = run_online(root, FIRST_DAY, SPLIT, url=redis_server.url)
    second = run_online(root, SPLIT + DAY, LAST, url=redis_server.url)
    assert check_of(first).passed and check_of(second).passed
    assert metadata(second)["rows_written"] == metadata(lake["run2"])["rows_written"]
    assert metadata(second)["store"].startswith("redis://127.0.0.1:")
    again = run_online(root, SPLIT + DAY, LAST, url=redis_server.url)
    assert metadata(again)["rows_written"] == 0 and check_of(again).passed
    users = sorted(latest_rows(lake["marts"], LAST)) + ["nobody"]
    store = open_store(redis_server.url, root, readonly=True)
    with TestClient(create_app(store, root / "lake" / "gold")) as over_redis:
        from_redis = over_redis.post("/features", json={"user_ids": users}).json()["results"]
        assert over_redis.get("/health").json()["store"] == "redis"
        assert over_redis.get("/schema").json() == client.get("/schema").json()
    from_sqlite = client.post("/features", json={"user_ids": users}).json()["results"]
    # Redis's runs came after the publish: all its records carry the version
    assert {b["training_set_version"] for b in from_redis[:-1]} == {VERSION}
    assert [without_freshness(b) | {"training_set_version": 0} for b in from_redis] == [
        without_freshness(b) | {"training_set_version": 0} for b in from_sqlite
    ]


def test_a_redis_write_killed_before_exec_writes_nothing(lake, redis_server):
    url = f"{redis_server.url}?prefix=killed:"
    script = (
        "from datetime import date; from pathlib import Path;"
        "from refinery.online.store import open_store; from refinery.online.sync import sync_dates;"
        f"s = open_store('{url}', Path('.'));"
        f"sync_dates(s, Path('{lake['root']}') / 'lake' / 'gold', [date(2025, 1, 3)], None)"
    )
    env = {**_env(), "REFINERY_KILL_AT": "online.redis_before_exec"}
    killed = subprocess.run([sys.executable, "-c", script], check=False, env=env)
    assert killed.returncode == -9
    store = open_store(url, lake["root"])
    assert store.users() == 0 and store.meta() == {}
    assert subprocess.run([sys.executable, "-c", script], check=False, env=_env()).returncode == 0
    assert store.users() > 0 and store.meta()["watermark"] == "2025-01-03"
    store.close()


def test_a_redis_outage_is_a_503_that_says_so(lake, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    server = RedisServer(tmp_path).start()
    store = open_store(server.url, lake["root"])
    sync_dates(store, lake["root"] / "lake" / "gold", [date(2025, 1, 3)], None)
    with TestClient(create_app(store, lake["root"] / "lake" / "gold")) as http:
        assert http.get("/features/u1").status_code == 200
        server.stop()
        for response in (
            http.get("/features/u1"),
            http.post("/features", json={"user_ids": ["u1", "u2"]}),
            http.get("/health"),
        ):
            assert response.status_code == 503, response.text
            detail = response.json()["detail"]
            assert f"online store redis://127.0.0.1:{server.port}" in detail
            assert "Traceback" not in response.text
    store.close()


def test_the_server_module_serves_the_data_root(lake):
    """`python -m refinery.online.server` (what `make serve` runs) and the Python client."""
    port = free_port()
    env = {**_env(), "REFINERY_DATA_DIR": str(lake["root"]), "REFINERY_SERVE_PORT": str(port)}
    env.pop("REFINERY_ONLINE_STORE", None)
    proc = subprocess.Popen([sys.executable, "-m", "refinery.online.server"], env=env)
    try:
        with FeatureClient(f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = http.health()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.1)
            assert health["store"] == "sqlite" and health["watermark"] == LAST.isoformat()
            assert http.feature("u1")["known"] is True
            assert http.feature("nobody")["known"] is False
            as_of = date(2025, 1, 5)
            past = features_as_of(["u1", "u2", "nobody"], as_of, f"http://127.0.0.1:{port}")
            day = lake["marts"].filter(pl.col("as_of_date") == as_of)
            u1 = day.filter(pl.col("user_id") == "u1").row(0, named=True)
            assert past[0]["features"]["spend_30d"] == u1["spend_30d"] == 20.0
            assert [p["known"] for p in past] == [True, True, False]
            assert [f["name"] for f in http.schema()["features"]][:2] == ["events_1d", "events_7d"]
            with pytest.raises(FeatureServiceError) as bad:
                http.features(["u1"], as_of="2030-01-01")
            assert bad.value.status == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_fast_path_answers_as_the_fastapi_route(lake, client):
    store = open_store("sqlite", lake["root"], readonly=True)
    with TestClient(create_app(store, lake["root"] / "lake" / "gold", fast_path=False)) as slow:
        for user in ["u1", "u2", "c000", "nobody", "x" * 300, "a b", "ü"]:
            fast_answer, slow_answer = (
                client.get(f"/features/{user}"),
                slow.get(f"/features/{user}"),
            )
            assert fast_answer.status_code == slow_answer.status_code
            assert fast_answer.headers["content-type"] == slow_answer.headers["content-type"]
            if fast_answer.status_code != 422:
                assert without_freshness(fast_answer.json()) == without_freshness(
                    slow_answer.json()
                )
    store.close()


def test_the_asset_hangs_below_gold_in_one_code_location():
    """The registration the lead adds to definitions.py: online/user_features after gold."""
    from dagster import AssetKey, Definitions

    from refinery.assets.gold import dbt_resource, gold_assets

    defs = Definitions(
        assets=[*gold_assets, *online_assets],
        resources={
            "lake": LakeResource(),
            "online_store": OnlineStoreResource(),
            "dbt": dbt_resource(),
        },
    )
    graph = defs.resolve_asset_graph()
    online = AssetKey(["online", "user_features"])
    assert graph.get(online).parent_keys == {AssetKey(["gold", "user_daily_features"])}
    assert (
        graph.get(online).partitions_def
        == graph.get(AssetKey(["gold", "user_daily_features"])).partitions_def
    )
    assert [c.name for c in defs.resolve_asset_graph().get(online).check_keys] == [PARITY_CHECK]
    defs.resolve_implicit_global_asset_job_def()  # resources satisfied


def test_recomputed_gold_for_the_same_day_replaces_only_what_changed(lake, tmp_path):
    """Late data makes gold rewrite an as-of date: the users whose values moved are rewritten."""
    root = lake["root"]
    gold = tmp_path / "gold"
    source = mart_file(root / "lake" / "gold", FEATURE_MART, LAST)
    shutil.copytree(root / "lake" / "gold" / FEATURE_MART, gold / FEATURE_MART)
    target = mart_path(gold, LAST)
    store_path = tmp_path / "store.sqlite"
    with sqlite3.connect(root / SQLITE_FILE) as src, sqlite3.connect(store_path) as dst:
        src.backup(dst)
    day = pl.read_parquet(source)
    victim = day.get_column("user_id")[3]
    late = pl.col("user_id") == victim
    day.with_columns(
        pl.when(late)
        .then(pl.col("spend_30d") + 12.34)
        .otherwise(pl.col("spend_30d"))
        .alias("spend_30d")
    ).write_parquet(target)
    store = open_store(f"sqlite:///{store_path}", root)
    try:
        stats = sync_dates(store, gold, [LAST], VERSION)
        assert (stats.users_written, stats.users_changed) == (1, 1)
        assert stats.written_users == [victim]
        report = check_parity(store, gold, sample_size=50, must_include=[victim])
        assert report.passed and report.compared_values > 50 * 30
        with TestClient(create_app(store, gold)) as http:
            served = http.get(f"/features/{victim}").json()["features"]["spend_30d"]
        assert served == day.filter(late).item(0, "spend_30d") + 12.34
    finally:
        store.close()


def test_an_empty_store_has_nothing_to_mismatch(tmp_path):
    store = open_store("sqlite", tmp_path)
    stats = sync_dates(store, tmp_path / "gold", [date(2025, 1, 1)], None)
    assert stats.missing_dates == ["2025-01-01"] and stats.users_written == 0
    report = check_parity(store, tmp_path / "gold")
    assert report.passed and report.sampled == []
    store.close()
