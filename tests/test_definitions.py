"""The code location loads, validates, and exposes the graph the README describes."""

from dagster import AssetKey, DefaultSensorStatus, Definitions

from refinery.definitions import defs

EXPECTED_ASSETS = {
    "bronze": {"bronze/events", "bronze/users", "bronze/products"},
    "silver": {"silver/events", "silver/users", "silver/products"},
    "gold": {
        "gold/stg_events", "gold/stg_users", "gold/stg_products",
        "gold/int_user_snapshots_scd2", "gold/int_product_snapshots_scd2",
        "gold/user_daily_features", "gold/labels", "gold/training_examples",
    },
    "ml": {"ml/training_dataset", "ml/feature_drift_report"},
    "online": {"online/user_features"},
}


def test_definitions_load_and_validate():
    Definitions.validate_loadable(defs)


def test_asset_keys_groups_and_lineage():
    graph = defs.resolve_asset_graph()
    by_group: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            by_group.setdefault(node.group_name, set()).add(key.to_user_string())
    assert by_group == EXPECTED_ASSETS
    assert AssetKey(["bronze", "events"]) in graph.get(AssetKey(["silver", "events"])).parent_keys
    assert AssetKey(["silver", "events"]) in graph.get(AssetKey(["gold", "stg_events"])).parent_keys
    assert AssetKey(["gold", "training_examples"]) in graph.get(
        AssetKey(["ml", "training_dataset"])
    ).parent_keys
    assert AssetKey(["gold", "user_daily_features"]) in graph.get(
        AssetKey(["online", "user_features"])
    ).parent_keys
    for key in ("bronze/events", "silver/events", "gold/user_daily_features"):
        assert graph.get(AssetKey(key.split("/"))).partitions_def is not None


def test_every_layer_has_blocking_checks():
    graph = defs.resolve_asset_graph()
    names = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for table in ("events", "users", "products"):
        assert (f"bronze/{table}", "contract") in names
        for check in ("row_accounting", "contract", "quarantine_rate"):
            assert (f"silver/{table}", check) in names
    for model in ("user_daily_features", "labels", "training_examples"):
        assert (f"gold/{model}", "contract") in names
    assert ("online/user_features", "serving_parity") in names
    dbt_tests = [n for a, n in names if a.startswith("gold/") and n != "contract"]
    assert len(dbt_tests) >= 40


def test_sensors_start_running_and_jobs_exist():
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"landing_sensor", "drift_sensor", "drift_report_automation"}
    assert all(s.default_status == DefaultSensorStatus.RUNNING for s in sensors.values())
    for job in ("ingest_job", "training_set_job", "drift_report_job"):
        assert defs.resolve_job_def(job)
    # the report's condition has a custom (Python) part: it must run in the code server
    assert sensors["drift_report_automation"]._use_user_code_server


def test_report_and_drift_sensor_take_the_lake_resource():
    """One source of truth for the data root: both require the `lake` resource."""
    from refinery.assets.ml.drift_report import feature_drift_report
    from refinery.sensors.drift_sensor import drift_sensor

    assert "lake" in feature_drift_report.required_resource_keys
    assert "lake" in drift_sensor.required_resource_keys


def test_dagster_cli_uses_the_instance_make_sets_up(tmp_path):
    """`make setup` writes .env; the dagster CLI run from that directory finds the same instance
    (dagster.yaml seeded from dagster_home/, run monitoring on) with no DAGSTER_HOME exported,
    and a DAGSTER_HOME set in the environment still wins."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    home, dotenv = tmp_path / "home", tmp_path / ".env"
    subprocess.run(
        ["make", "-s", "-C", str(repo), "instance", "dotenv", f"DOTENV={dotenv}",
         f"DAGSTER_HOME={home}", f"REFINERY_DATA_DIR={tmp_path / 'data'}"],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "REFINERY_DATA_DIR")}
    dagster = str(Path(sys.executable).parent / "dagster")

    def instance_info(**extra) -> str:
        result = subprocess.run(
            [dagster, "instance", "info"], cwd=tmp_path, env={**env, **extra},
            capture_output=True, text=True, check=True,
        )
        return result.stdout

    info = instance_info()
    assert f"$DAGSTER_HOME: {home}\n" in info
    assert "refinery.launcher" in info and "run_monitoring" in info
    other = tmp_path / "other"
    other.mkdir()
    assert f"$DAGSTER_HOME: {other}\n" in instance_info(DAGSTER_HOME=str(other))
    # a .env the operator wrote is not overwritten
    dotenv.write_text("DAGSTER_HOME=/somewhere/else\n")
    subprocess.run(["make", "-s", "-C", str(repo), "dotenv", f"DOTENV={dotenv}"], check=True,
                   capture_output=True)
    assert dotenv.read_text() == "DAGSTER_HOME=/somewhere/else\n"
