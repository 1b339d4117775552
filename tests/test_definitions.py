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
    dbt_tests = [n for a, n in names if a.startswith("gold/") and n != "contract"]
    assert len(dbt_tests) >= 40


def test_sensors_start_running_and_jobs_exist():
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"landing_sensor", "drift_sensor", "drift_report_automation"}
    assert all(s.default_status == DefaultSensorStatus.RUNNING for s in sensors.values())
    assert defs.resolve_job_def("ingest_job") and defs.resolve_job_def("training_set_job")
