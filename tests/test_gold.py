"""The gold layer through real dbt-duckdb and Dagster, on a small silver lake (gold_fixtures).

One module-scoped story in two Dagster runs (each one `dbt build`; dbt costs ~10 s a call here):
  run 1: knowledge dates 01-01..01-05 while silver holds only arrivals up to 01-05;
  run 2: the rest of silver lands (late events included); knowledge dates 01-05..01-15, so
         01-05 is recomputed long after later data arrived and 01-04 must stay untouched.
"""

import importlib.metadata
import inspect
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import ANY

import dagster_dbt.core.resource
import duckdb
import polars as pl
import pytest
import yaml
from dagster import AssetKey, materialize
from dagster_dbt import DbtCliResource
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from packaging import version

from refinery.assets.gold import export_marts, gold_dbt_models
from refinery.assets.gold.dbt_project import (
    DBT_PROJECT_DIR,
    DEFAULT_DUCKDB_MEMORY_LIMIT,
    dbt_resource,
    memory_limit_gb,
    prune_dbt_targets,
    targets_kept,
)
from refinery.assets.gold.export import mart_file
from refinery.assets.gold.plan import (
    MARTS,
    RUN_VALUES_ENV,
    arrival_signatures,
    as_of_dates_for,
    dbt_build,
    knowledge_date_range,
    label_delay_days,
)
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths
from tests.conftest import REPO_DBT_TARGET
from tests.gold_fixtures import (
    FIRST_DAY,
    LAST_DAY,
    U1_BIRTH_YEAR,
    U1_SIGNUP,
    D,
    _event,
    at,
    run_gold,
    write_random_silver,
    write_silver,
)

DAY = timedelta(days=1)
LAST_KNOWLEDGE_DAY = date(2025, 1, 15)


def read_mart(root: Path, model: str, as_of: date) -> pl.DataFrame:
    return pl.read_parquet(mart_file(LakePaths(root).lake / "gold", model, as_of))


def mart_bytes(root: Path, model: str, as_of: date) -> bytes:
    return mart_file(LakePaths(root).lake / "gold", model, as_of).read_bytes()


def warehouse_rows(root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(LakePaths(root).warehouse), read_only=True) as warehouse:
        return warehouse.execute(sql).fetchall()


def user_row(frame: pl.DataFrame, user: str) -> dict:
    rows = frame.filter(pl.col("user_id") == user).to_dicts()
    assert len(rows) == 1, f"expected one row for {user}, got {len(rows)}"
    return rows[0]


def leave_writer_debris(root: Path) -> None:
    """What killed or in-flight silver writers leave in the table folders: a staging folder, a
    folder being swapped out, a hidden temp file. None is a partition; gold must not read them."""
    events = LakePaths(root).lake / "silver" / "events"
    part = events / f"date={D}" / "part-0.parquet"
    for debris in (
        events / ".staging-0123456789abcdef" / "part-0.parquet",
        events / f".date={D}.old.0123456789abcdef" / "part-0.parquet",
        events / f"date={D}" / ".part-1.parquet.0123456789abcdef.tmp",
    ):
        debris.parent.mkdir(parents=True, exist_ok=True)
        debris.write_bytes(part.read_bytes())


@pytest.fixture(scope="module")
def story(tmp_path_factory, not_the_lake):
    root = tmp_path_factory.mktemp("gold_lake")
    features_of = f"select * from user_daily_features where as_of_date in ('{D - DAY}', '{D}')"
    # the lake resource says where the data is; the environment (not_the_lake) points elsewhere
    write_silver(root, until=D)
    run1 = run_gold(root, FIRST_DAY, D)
    day_before = mart_file(LakePaths(root).lake / "gold", "user_daily_features", D - DAY)
    after_run1 = SimpleNamespace(
        features_d_bytes=mart_bytes(root, "user_daily_features", D),
        day_before_stat=(day_before.read_bytes(), day_before.stat().st_mtime_ns),
        feature_rows=warehouse_rows(root, f"{features_of} order by all"),
        label_rows=warehouse_rows(root, "select count(*) from labels")[0][0],
    )
    write_silver(root, since=D + DAY, until=LAST_DAY)
    leave_writer_debris(root)
    run2 = run_gold(root, D, LAST_KNOWLEDGE_DAY)
    after_run2 = SimpleNamespace(
        day_before_stat=(day_before.read_bytes(), day_before.stat().st_mtime_ns),
        feature_rows=warehouse_rows(root, f"{features_of} order by all"),
        label_dates=warehouse_rows(root, "select distinct as_of_date from labels order by 1"),
    )
    return SimpleNamespace(
        root=root,
        run1=run1,
        run2=run2,
        after_run1=after_run1,
        after_run2=after_run2,
        elsewhere=sorted(not_the_lake.rglob("*")),
    )


def test_gold_reads_and_writes_where_the_lake_resource_says(story):
    assert story.run1.success and story.run2.success
    assert story.elsewhere == []  # REFINERY_DATA_DIR pointed here: nothing read or written
    assert LakePaths(story.root).warehouse.exists()


def invocation_targets(target: Path, run_id: str) -> list[Path]:
    """The dbt target dirs dagster-dbt made for one run's builds (<op>-<run id[:7]>-<uuid>)."""
    return sorted(target.glob(f"{gold_dbt_models.op.name}-{run_id[:7]}-*"))


def test_dbt_builds_write_their_targets_outside_the_repo(story, dbt_target_outside_the_repo):
    for run in (story.run1, story.run2):
        assert invocation_targets(dbt_target_outside_the_repo, run.run_id) != []
        assert invocation_targets(REPO_DBT_TARGET, run.run_id) == []
    compiled = invocation_targets(dbt_target_outside_the_repo, story.run2.run_id)[-1]
    assert (compiled / "run_results.json").exists()


def test_a_later_run_on_the_lake_reuses_dbt_s_parse_and_tests_its_own_dates(
    story, dbt_target_outside_the_repo
):
    # the run's dates are not in --vars, so dbt keeps the parse of the lake's previous run
    target = invocation_targets(dbt_target_outside_the_repo, story.run2.run_id)[-1]
    log = (target / "dbt.log").read_text()
    assert "Unable to do partial parsing" not in log
    assert "Partial parsing enabled" in log
    # ... and the data tests' where configs read the run's dates from run_window, not the parse
    assert warehouse_rows(story.root, "select min_date, max_date from run_window") == [
        (D, LAST_KNOWLEDGE_DAY)
    ]
    compiled = "\n".join(path.read_text() for path in (target / "compiled").rglob("*.sql"))
    assert "from main.run_window" in compiled


def test_the_dbt_resource_runs_no_dbt_version_and_builds_no_adapter(monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args}: dbt --version imports dbt and asks PyPI")

    monkeypatch.setattr("dagster_dbt.core.resource.check_output", no_subprocess)
    installed = version.parse(importlib.metadata.version("dbt-core"))
    assert dbt_resource()._cli_version == installed
    # nor does it build a dbt adapter in the run's process (only row counts and column metadata,
    # which gold does not fetch, use one)
    assert dbt_resource()._initialize_dbt_core_adapter(["build"]) is None


def test_dbt_runs_in_the_step_s_own_process_and_leaves_its_environment_as_it_was(
    story, dbt_target_outside_the_repo
):
    # the story's runs executed in this process (materialize): so did dbt, every event of it
    target = invocation_targets(dbt_target_outside_the_repo, story.run2.run_id)[-1]
    events = [json.loads(line) for line in (target / "dbt.log").read_text().splitlines() if line]
    assert {event["info"]["pid"] for event in events} == {os.getpid()}
    assert any(event["info"]["name"] == "LogModelResult" for event in events)
    # the run's values and dbt's flags were in os.environ only while dbt ran
    assert RUN_VALUES_ENV not in os.environ
    assert {"DBT_LOG_LEVEL", "DBT_LOG_FORMAT", "DAGSTER_DBT_CLI"}.isdisjoint(os.environ)
    assert os.environ["DBT_TARGET_PATH"] == str(dbt_target_outside_the_repo)
    # dagster-dbt still builds its invocation by the one name in_process_dbt replaces
    assert "DbtCliInvocation.run(" in inspect.getsource(DbtCliResource.cli)
    assert dagster_dbt.core.resource.DbtCliInvocation is DbtCliInvocation


def test_features_of_one_user_and_day_match_a_hand_computation(story):
    u1 = user_row(read_mart(story.root, "user_daily_features", D), "u1")
    # Known on 01-05: e1-e3 (01-05), e4-e5 (01-03), e6 (12-29, arrived 01-01).
    expected = {
        "events_1d": 3,
        "events_7d": 5,
        "events_30d": 6,
        "views_1d": 1,
        "views_7d": 2,
        "views_30d": 3,
        "clicks_1d": 0,
        "clicks_7d": 1,
        "clicks_30d": 1,
        "add_to_carts_1d": 1,
        "add_to_carts_7d": 1,
        "add_to_carts_30d": 1,
        "purchases_1d": 1,
        "purchases_7d": 1,
        "purchases_30d": 1,
        "items_purchased_30d": 2,
        "spend_1d": 20.0,
        "spend_7d": 20.0,
        "spend_30d": 20.0,
        "avg_order_value_30d": 20.0,
        "sessions_7d": 2,
        "sessions_30d": 3,
        "active_days_30d": 3,
        "distinct_products_30d": 3,
        "distinct_categories_30d": 3,
        "days_since_last_event": 0,
        "days_since_last_purchase": 0,
        "view_to_cart_rate_30d": pytest.approx(1 / 3),
        "cart_to_purchase_rate_30d": 1.0,
        "share_mobile_30d": pytest.approx(4 / 6),
        "favourite_category_30d": "books",
        "main_device_30d": "ios",
        "tenure_days": (D - U1_SIGNUP).days,
        "age": D.year - U1_BIRTH_YEAR,
        "marketing_opt_in": 1,
        "plan": "plus",
        "country": "DE",
    }
    assert {name: u1[name] for name in expected} == expected
    # u2 never purchased: recency and order value are null, spend is 0.
    u2 = user_row(read_mart(story.root, "user_daily_features", D), "u2")
    assert (u2["days_since_last_purchase"], u2["avg_order_value_30d"], u2["spend_30d"]) == (
        None,
        None,
        0.0,
    )


def test_only_active_users_get_a_feature_row(story):
    users = set(read_mart(story.root, "user_daily_features", D)["user_id"])
    assert users == {"u1", "u2", "u3"}  # u4 is in the CRM but never acted


def test_features_of_a_day_ignore_everything_that_arrived_later(story):
    # Run 2 recomputed 01-05 after 01-06..01-16 landed, with events of 01-04/01-05 among them.
    assert mart_bytes(story.root, "user_daily_features", D) == story.after_run1.features_d_bytes
    # The late view (event_time 01-05 23:00, arrived 01-07) is in 01-07's windows, not 01-05's.
    late_view_day = read_mart(story.root, "user_daily_features", D + 2 * DAY)
    u1_on_arrival = user_row(late_view_day, "u1")
    assert (u1_on_arrival["views_7d"], u1_on_arrival["views_30d"]) == (3, 4)
    assert u1_on_arrival["views_1d"] == 0  # the 1-day window is the day the event happened
    # The late purchase (event_time 01-04, arrived 01-06) appears on 01-06, not before.
    u1_next_day = user_row(read_mart(story.root, "user_daily_features", D + DAY), "u1")
    assert (u1_next_day["purchases_30d"], u1_next_day["spend_30d"]) == (2, 25.0)
    u1_before = user_row(read_mart(story.root, "user_daily_features", D - DAY), "u1")
    assert (u1_before["purchases_30d"], u1_before["events_1d"]) == (0, 0)


def test_user_and_product_attributes_follow_the_snapshot_known_on_the_day(story):
    def u(day: date, user: str) -> dict:
        return user_row(read_mart(story.root, "user_daily_features", day), user)

    assert u(D - DAY, "u1")["plan"] == "free"  # plus arrives with the 01-05 snapshot
    assert u(D, "u1")["plan"] == "plus"
    assert u(D + DAY, "u3")["plan"] == "free"
    # u3 is missing from the 01-07 snapshot; no users file arrives on 01-08 at all.
    for day in (D + 2 * DAY, D + 3 * DAY):
        u3 = u(day, "u3")
        assert (u3["plan"], u3["country"], u3["tenure_days"]) == (None, None, None)
    # p3 moves from games to toys in the 01-07 catalogue: u1's books/toys/games become books/toys.
    assert u(D + DAY, "u1")["distinct_categories_30d"] == 3
    assert u(D + 2 * DAY, "u1")["distinct_categories_30d"] == 2


def test_labels_count_late_purchases_and_wait_for_the_allowed_lateness(story):
    assert story.after_run1.label_rows == 0  # nothing is 10 days old yet
    last_label_day = LAST_KNOWLEDGE_DAY - timedelta(days=label_delay_days())
    assert story.after_run2.label_dates == [
        (FIRST_DAY + timedelta(days=offset),)
        for offset in range((last_label_day - FIRST_DAY).days + 1)
    ]
    labels = read_mart(story.root, "labels", D)
    # u1: purchase on 01-08 that arrived 01-10. u2: 01-12 purchase arrived 01-16 (> D+10), the
    # 01-13 one is past the horizon. u3 never purchases.
    assert dict(zip(labels["user_id"], labels["label"])) == {"u1": 1, "u2": 0, "u3": 0}
    assert set(labels["label_window_end"]) == {D + 7 * DAY}
    assert not mart_file(LakePaths(story.root).lake / "gold", "labels", D + DAY).exists()


def test_a_new_day_leaves_history_alone_and_a_rerun_replaces_its_day(story):
    # Run 2 covered 01-05..01-15: 01-04 was neither rewritten in DuckDB nor re-exported.
    assert story.after_run2.day_before_stat == story.after_run1.day_before_stat
    # 01-05 was rerun: its rows were replaced (same rows, no duplicates), history kept.
    assert story.after_run2.feature_rows == story.after_run1.feature_rows
    duplicated_keys = warehouse_rows(
        story.root,
        "select model, count(*) from ("
        "  select 'features' as model, user_id, as_of_date from user_daily_features"
        "  union all select 'labels', user_id, as_of_date from labels"
        "  union all select 'examples', user_id, as_of_date from training_examples"
        ") group by model, user_id, as_of_date having count(*) > 1",
    )
    assert duplicated_keys == []


def test_training_examples_follow_the_shared_interface(story):
    examples = read_mart(story.root, "training_examples", D)
    assert examples.columns[:2] == ["user_id", "as_of_date"] and examples.columns[-1] == "label"
    assert examples.schema["user_id"] == pl.String and examples.schema["as_of_date"] == pl.Date
    assert examples.schema["label"] in (pl.Int8, pl.Int32)
    features = examples.drop("user_id", "as_of_date", "label")
    assert features.width >= 20
    allowed = {pl.Float64, pl.Int64, pl.String}
    assert {name: dtype for name, dtype in features.schema.items() if dtype not in allowed} == {}
    assert examples["user_id"].to_list() == sorted(examples["user_id"].to_list())
    features_of_d = read_mart(story.root, "user_daily_features", D)
    assert examples.drop("label").equals(features_of_d)


def test_dagster_runs_dbt_and_reports_tests_as_asset_checks(story):
    run = story.run1
    assert run.success
    materialized = {event.asset_key for event in run.get_asset_materialization_events()}
    assert {AssetKey(["gold", model]) for model in MARTS} <= materialized
    checks = run.get_asset_check_evaluations()
    assert len(checks) == len(list(gold_dbt_models.check_specs)) > 10
    assert all(check.passed for check in checks)
    features = next(
        event.materialization
        for event in run.get_asset_materialization_events()
        if event.asset_key == AssetKey(["gold", "user_daily_features"])
    )
    assert features.metadata["as_of_dates"].value == f"{FIRST_DAY}..{D}"
    # a range run: each partition's own rows, the run's total beside them
    assert features.metadata["rows_in_run"].value == sum(
        read_mart(story.root, "user_daily_features", FIRST_DAY + offset * DAY).height
        for offset in range(5)
    )
    own = date.fromisoformat(features.partition)
    assert features.metadata["dagster/row_count"].value == (
        read_mart(story.root, "user_daily_features", own).height
    )
    assert len(features.metadata["gold_files"].value) == 5
    labels = next(
        event.materialization
        for event in story.run2.get_asset_materialization_events()
        if event.asset_key == AssetKey(["gold", "labels"])
    )
    delay = timedelta(days=label_delay_days())
    assert labels.metadata["as_of_dates"].value == f"{D - delay}..{LAST_KNOWLEDGE_DAY - delay}"


def mart_files(root: Path) -> dict[str, bytes]:
    gold = LakePaths(root).lake / "gold"
    return {
        str(path.relative_to(gold)): path.read_bytes() for path in sorted(gold.rglob("*.parquet"))
    }


@pytest.mark.slow
def test_a_backfill_in_one_run_equals_the_same_days_run_one_by_one(tmp_path, monkeypatch):
    """A backfill is one dbt build whatever its length; a daily run extends the incremental
    aggregates by one arrival day. Both must publish the same bytes."""
    published = {}
    for layout in ("one_run", "daily"):
        root = tmp_path / layout
        dbt_target = tmp_path / f"dbt_target_{layout}"  # this layout's builds alone
        monkeypatch.setenv("DBT_TARGET_PATH", str(dbt_target))
        monkeypatch.setenv("REFINERY_DATA_DIR", str(root))
        monkeypatch.setenv("REFINERY_DBT_TARGETS_KEPT", "2")
        write_silver(root, until=LAST_DAY)
        if layout == "one_run":
            runs = [(FIRST_DAY, LAST_KNOWLEDGE_DAY)]
        else:
            days = (LAST_KNOWLEDGE_DAY - FIRST_DAY).days
            runs = [(FIRST_DAY + i * DAY, FIRST_DAY + i * DAY) for i in range(0, days + 1, 1)]
            runs = [(FIRST_DAY, FIRST_DAY + 8 * DAY), *runs[9:]]  # history first, then daily
        for first, last in runs:
            run = run_gold(root, first, last)
            assert run.success
            checks = run.get_asset_check_evaluations()
            # each dbt test reported once for the run
            assert len(checks) == len({(c.asset_key, c.check_name) for c in checks})
            assert len(checks) == len(list(gold_dbt_models.check_specs))
            assert all(check.passed for check in checks)
        # every run its own dbt target dir: the pruning leaves the two newest
        targets = [p for p in dbt_target.glob(f"{gold_dbt_models.op.name}-*") if p.is_dir()]
        assert 1 <= len(targets) <= 2
        published[layout] = mart_files(root)
    assert len(published["one_run"]) > 20
    assert published["one_run"] == published["daily"]


def test_arrival_signatures_change_when_a_partition_is_rewritten(tmp_path):
    lake = LakePaths(tmp_path)
    write_silver(tmp_path, until=date(2025, 1, 3))
    first = arrival_signatures(lake, FIRST_DAY, date(2025, 1, 5))
    assert sorted(first) == ["2025-01-01", "2025-01-02", "2025-01-03"]  # no partition: no entry
    assert first == arrival_signatures(lake, FIRST_DAY, date(2025, 1, 5))
    write_silver(tmp_path, until=date(2025, 1, 2), since=date(2025, 1, 2))
    second = arrival_signatures(lake, FIRST_DAY, date(2025, 1, 5))
    assert second["2025-01-02"] != first["2025-01-02"]
    assert {k: v for k, v in second.items() if k != "2025-01-02"} == {
        k: v for k, v in first.items() if k != "2025-01-02"
    }


def test_dbt_targets_are_pruned_to_the_newest_and_the_latest_always_stays(tmp_path):
    target = tmp_path / "target"
    names = [f"gold_dbt_models-run{i:04d}-abc{i:04d}" for i in range(6)]
    for age, name in enumerate(reversed(names)):  # names[0] oldest, names[5] newest
        (target / name / "compiled").mkdir(parents=True)
        os.utime(target / name, (1_000_000 - age * 60, 1_000_000 - age * 60))
    others = [target / "manifest.json", target / "other_op-run0000-abc0000"]
    others[0].write_text("{}")
    others[1].mkdir()
    latest = target / names[0]  # oldest mtime, but it is this invocation's: it stays
    removed = prune_dbt_targets(latest, keep=3)
    left = sorted(path.name for path in target.glob("gold_dbt_models-*"))
    assert left == sorted([names[0], names[5], names[4]])
    assert sorted(removed) == sorted(target / name for name in names[1:4])
    assert all(path.exists() for path in others)
    with pytest.raises(ValueError, match="keep must be >= 1"):
        prune_dbt_targets(latest, keep=0)


def test_integer_settings_below_their_minimum_are_refused_by_name(monkeypatch):
    name = "REFINERY_DBT_TARGETS_KEPT"
    monkeypatch.delenv(name, raising=False)
    assert targets_kept() == 10
    monkeypatch.setenv(name, "3")
    assert targets_kept() == 3
    for bad, message in (("0", "must be >= 1"), ("-2", "must be >= 1"), ("ten", "not an integer")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValueError, match=f"{name}=.*{message}"):
            targets_kept()


def test_the_wiring_and_the_dbt_profile_share_one_default_memory_cap(monkeypatch):
    profile = (DBT_PROJECT_DIR / "profiles.yml").read_text()
    default = DEFAULT_DUCKDB_MEMORY_LIMIT
    assert f"env_var('REFINERY_DUCKDB_MEMORY_LIMIT', '{default}')" in profile
    monkeypatch.delenv("REFINERY_DUCKDB_MEMORY_LIMIT", raising=False)
    assert memory_limit_gb() == memory_limit_gb(default)


def test_memory_limit_is_read_as_duckdb_reads_it():
    assert memory_limit_gb("6GB") == 6
    assert memory_limit_gb("512MB") == 0.512
    assert round(memory_limit_gb("8GiB"), 3) == 8.59
    for bad in ("6", "lots", "6 parsecs", "-1GB"):
        with pytest.raises(ValueError, match="REFINERY_DUCKDB_MEMORY_LIMIT"):
            memory_limit_gb(bad)


def test_gold_asset_keys_groups_and_silver_dependencies():
    keys = {key.to_user_string() for key in gold_dbt_models.keys}
    assert {f"gold/{model}" for model in MARTS} <= keys
    assert all(key.startswith("gold/") for key in keys)
    assert set(gold_dbt_models.group_names_by_key.values()) == {"gold"}
    external = gold_dbt_models.dependency_keys - set(gold_dbt_models.keys)
    assert external == {AssetKey(["silver", name]) for name in ("events", "users", "products")}
    # single-run backfills: `dagster asset materialize --partition-range` requires them
    assert gold_dbt_models.backfill_policy.max_partitions_per_run is None


def test_partition_window_becomes_knowledge_dates_in_the_run_env_and_lake_vars():
    start = datetime(2025, 1, 3, tzinfo=UTC)
    assert knowledge_date_range(start, start + 3 * DAY) == (date(2025, 1, 3), date(2025, 1, 5))
    build = dbt_build(date(2025, 1, 3), date(2025, 1, 5), Path("/lake/root"))
    assert build.args[:2] == ["build", "--vars"]
    dbt_vars = yaml.safe_load(build.vars_arg)
    # --vars: only what every run on this lake shares, so dbt re-uses its parse between runs
    assert dbt_vars == {"data_dir": str(Path("/lake/root").resolve()), "duckdb_threads": ANY}
    assert dbt_vars["duckdb_threads"] >= 1
    other_day = dbt_build(date(2025, 2, 1), date(2025, 2, 9), Path("/lake/root"))
    assert other_day.args == build.args
    run_values = json.loads(build.env[RUN_VALUES_ENV])
    assert run_values["min_date"] == "2025-01-03" and run_values["max_date"] == "2025-01-05"
    assert run_values["arrival_signatures"] == {}  # no silver partition at /lake/root
    assert as_of_dates_for("user_daily_features", date(2025, 1, 12), date(2025, 1, 13)) == [
        date(2025, 1, 12),
        date(2025, 1, 13),
    ]
    assert as_of_dates_for("labels", date(2025, 1, 12), date(2025, 1, 12)) == [date(2025, 1, 2)]


def test_export_is_atomic_reproducible_and_drops_days_without_rows(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "create table user_daily_features as select * from (values "
            "('b', date '2025-01-02', 1.5), ('a', date '2025-01-02', 2.5), "
            "('c', date '2025-01-03', 0.0)) as t(user_id, as_of_date, spend_30d)"
        )
    gold = tmp_path / "gold"
    stale = mart_file(gold, "user_daily_features", date(2025, 1, 4))
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    days = [date(2025, 1, 2), date(2025, 1, 3), date(2025, 1, 4)]
    assert export_marts(warehouse, gold, ["user_daily_features"], days) == {
        "user_daily_features": 3
    }
    first = mart_file(gold, "user_daily_features", days[0])
    assert pl.read_parquet(first)["user_id"].to_list() == ["a", "b"]
    first_bytes = first.read_bytes()
    export_marts(warehouse, gold, ["user_daily_features"], days)
    assert first.read_bytes() == first_bytes
    assert not stale.exists()
    assert [p.name for p in first.parent.iterdir()] == ["data.parquet"]  # no temp files left
    with pytest.raises(LookupError, match="labels"):
        export_marts(warehouse, gold, ["labels"], days)
    with pytest.raises(FileNotFoundError, match="dbt build"):
        export_marts(tmp_path / "missing.duckdb", gold, ["labels"], days)


def publish_training_set(root: Path, instance):
    """The real ml/training_dataset asset over the lake's gold (a window that 32 days allow)."""
    from dagster import RunConfig

    from refinery.assets.ml.training_dataset import TrainingDatasetConfig, training_dataset
    from refinery.resources.registry import DvcRegistry

    config = TrainingDatasetConfig(window_days=21, feature_warmup_days=0)
    result = materialize(
        [training_dataset],
        instance=instance,
        resources={"lake": LakeResource(data_dir=str(root)), "dvc_registry": DvcRegistry()},
        run_config=RunConfig(ops={"ml__training_dataset": config}),
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


@pytest.mark.slow
def test_same_silver_gives_the_same_gold_bytes_and_no_new_training_set_version(
    tmp_path, monkeypatch
):
    """Money is summed exactly (DECIMAL): float sums changed in the last digits with the order
    DuckDB's threads added them in, and a spurious training-set version followed. One lake: gold
    on 1 thread in one build and a training set published from it; then the same range rerun over
    unchanged silver on 4 threads in 4 builds: the same gold bytes, and the training set rebuilt
    from them publishes no new version."""
    from dagster import DagsterInstance

    first, days = date(2025, 3, 1), 32
    last = first + (days - 1) * DAY
    root = tmp_path / "lake"
    write_random_silver(root, first, days, users=30, events_per_day=1500, seed=11)
    instance = DagsterInstance.ephemeral()
    published, versions = [], []
    for threads, per_build in (("1", None), ("4", "8")):
        monkeypatch.setenv("REFINERY_DUCKDB_THREADS", threads)
        if per_build is None:
            monkeypatch.delenv("REFINERY_GOLD_DATES_PER_BUILD", raising=False)
        else:
            monkeypatch.setenv("REFINERY_GOLD_DATES_PER_BUILD", per_build)
        assert run_gold(root, first, last).success
        published.append(mart_files(root))
        versions.append(publish_training_set(root, instance))
    assert len(published[0]) == days + 2 * (days - label_delay_days())
    changed = sorted(name for name, data in published[0].items() if published[1][name] != data)
    assert changed == []
    spend = pl.read_parquet(mart_file(LakePaths(root).lake / "gold", "user_daily_features", last))[
        "spend_30d"
    ]
    # cent amounts summed exactly: every total is a whole number of cents (to the double nearest it)
    assert spend.sum() > 0 and (((spend * 100).round() - spend * 100).abs() < 1e-6).all()
    assert versions[0]["new_version"].value is True
    assert versions[1]["new_version"].value is False
    assert versions[1]["version_tag"].value == versions[0]["version_tag"].value
    assert versions[1]["content_md5"].value == versions[0]["content_md5"].value


def test_a_gold_backfill_gives_each_partition_its_own_row_count(story):
    """Each knowledge date of a range run shows the rows of its own as-of date, not the run's."""
    gold = LakePaths(story.root).lake / "gold"
    events = story.run2.get_asset_materialization_events()
    for model, delay in (("user_daily_features", 0), ("training_examples", label_delay_days())):
        latest = {
            event.materialization.partition: event.materialization.metadata
            for event in events
            if event.materialization.asset_key == AssetKey(["gold", model])
        }
        assert len(latest) == (LAST_KNOWLEDGE_DAY - D).days + 1
        for partition, metadata in latest.items():
            as_of = date.fromisoformat(partition) - timedelta(days=delay)
            path = mart_file(gold, model, as_of)
            expected = pl.read_parquet(path).height if path.exists() else 0
            assert metadata["dagster/row_count"].value == expected, (model, partition)
            assert metadata["as_of_date"].value == as_of.isoformat()
        totals = {m["rows_in_run"].value for m in latest.values()}
        assert totals == {sum(m["dagster/row_count"].value for m in latest.values())}


def test_every_dbt_test_is_described_in_words():
    specs = {spec.name: spec for spec in gold_dbt_models.check_specs}
    assert specs and all(spec.description for spec in specs.values())
    unique = specs["unique_combination_of_columns_user_daily_features_user_id__as_of_date"]
    assert unique.description == (
        "dbt test: one row per (user_id, as_of_date) (rows of the run's dates); "
        "blocks the marts when it fails."
    )
    assert (
        "only one of web, ios, android"
        in specs[
            "accepted_values_user_daily_features_main_device_30d__web__ios__android"
        ].description
    )


def test_a_failing_dbt_test_fails_the_run_naming_it_and_the_next_build_in_process_runs(
    tmp_path, dbt_target_outside_the_repo
):
    """dbt in the step's process: a blocking dbt test that fails stops the run before anything
    is exported, with an error naming the test; dbt's state and the warehouse are released, so
    the next run in the same process builds."""
    bogus = _event("bad-1", "u1", "teleport", at(D, 9), D, "p1", device="ios", session="s9")
    write_silver(tmp_path, until=D, extra_events=[bogus])
    failed = run_gold(tmp_path, D, D, raise_on_error=False)
    assert not failed.success
    failure = next(event for event in failed.all_events if event.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "accepted_values_stg_events_event_type" in message
    assert "in the step's process" in message
    assert not (LakePaths(tmp_path).lake / "gold").exists()
    checks = {check.check_name: check.passed for check in failed.get_asset_check_evaluations()}
    assert (
        checks["accepted_values_stg_events_event_type__view__click__add_to_cart__purchase"] is False
    )
    # the bad row repaired: the same process builds the day
    write_silver(tmp_path, until=D)
    assert run_gold(tmp_path, D, D).success
    assert read_mart(tmp_path, "user_daily_features", D).height > 0
