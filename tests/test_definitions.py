"""The code location loads, validates, and exposes the graph the README describes."""

from dagster import AssetKey, DefaultSensorStatus, Definitions

from refinery.definitions import defs

EXPECTED_ASSETS = {
    "bronze": {"bronze/events", "bronze/users", "bronze/products"},
    "silver": {"silver/events", "silver/users", "silver/products"},
    "gold": {
        "gold/stg_events",
        "gold/stg_users",
        "gold/stg_products",
        "gold/int_user_snapshots_scd2",
        "gold/int_product_snapshots_scd2",
        "gold/int_user_day_events",
        "gold/int_user_day_keys",
        "gold/int_arrival_ledger",
        "gold/user_daily_features",
        "gold/labels",
        "gold/training_examples",
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
    assert (
        AssetKey(["gold", "training_examples"])
        in graph.get(AssetKey(["ml", "training_dataset"])).parent_keys
    )
    assert (
        AssetKey(["gold", "user_daily_features"])
        in graph.get(AssetKey(["online", "user_features"])).parent_keys
    )
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
        [
            "make",
            "-s",
            "-C",
            str(repo),
            "instance",
            "dotenv",
            f"DOTENV={dotenv}",
            f"DAGSTER_HOME={home}",
            f"REFINERY_DATA_DIR={tmp_path / 'data'}",
        ],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "REFINERY_DATA_DIR")}
    dagster = str(Path(sys.executable).parent / "dagster")

    def instance_info(**extra) -> str:
        result = subprocess.run(
            [dagster, "instance", "info"],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
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
    subprocess.run(
        ["make", "-s", "-C", str(repo), "dotenv", f"DOTENV={dotenv}"],
        check=True,
        capture_output=True,
    )
    assert dotenv.read_text() == "DAGSTER_HOME=/somewhere/else\n"


# --- per concern, and the catalog every asset carries ---------------------------------------


def test_one_definitions_object_at_module_scope():
    """Dagster's loader refuses a module with two (the per-concern ones live in refinery.defs)."""
    import refinery.definitions as module

    assert [n for n, v in vars(module).items() if isinstance(v, Definitions)] == ["defs"]


def test_each_concern_holds_its_jobs_beside_the_sensors_that_request_them():
    from refinery.defs import gold, ingest, ml, online

    def keys(concern):
        return {k.to_user_string() for a in concern.defs.assets for k in a.keys}

    assert keys(ingest) == EXPECTED_ASSETS["bronze"] | EXPECTED_ASSETS["silver"]
    assert keys(gold) == EXPECTED_ASSETS["gold"]
    assert keys(ml) == EXPECTED_ASSETS["ml"]
    assert keys(online) == EXPECTED_ASSETS["online"]
    for concern, sensor_jobs in (
        (ingest, {"landing_sensor": {"ingest_job"}}),
        (ml, {"drift_sensor": {"training_set_job", "training_set_bootstrap_job"}}),
    ):
        sensors = {s.name: s for s in concern.defs.sensors}
        jobs = {j.name for j in concern.defs.jobs}
        for sensor, targets in sensor_jobs.items():
            assert {t.job_name for t in sensors[sensor].targets} == targets and targets <= jobs
    assert {s.name for s in ml.defs.sensors} == {"drift_sensor", "drift_report_automation"}
    assert {j.name for j in ingest.defs.jobs} == {"ingest_job"}
    assert {j.name for j in ml.defs.jobs} == {
        "training_set_job",
        "training_set_bootstrap_job",
        "drift_report_job",
    }


def test_every_asset_has_owner_tags_code_version_and_code_reference():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        name = key.to_user_string()
        layer = name.split("/")[0]
        assert node.owners and node.owners[0].startswith("team:"), name
        assert node.tags["layer"] == layer and node.tags["concern"], name
        assert node.code_version, name
        references = node.metadata["dagster/code_references"].code_references
        assert any(r.file_path.endswith(".py") and r.line_number for r in references), name
        if layer == "gold":  # dbt models also point at their SQL (enable_code_references)
            assert any(r.file_path.endswith(".sql") for r in references), name
        has_policy = node.freshness_policy is not None
        assert has_policy == (layer in ("gold", "ml")), name


def test_code_version_follows_the_source_of_the_module_and_its_imports(tmp_path):
    import importlib.util
    import sys

    from refinery.defs.catalog import source_code_version

    def load(text: str):
        path = tmp_path / "some_asset.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location("some_asset", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["some_asset"] = module
        spec.loader.exec_module(module)
        return module

    imports = "from refinery.assets.ml.splits import SplitSpec\n"
    first = source_code_version(load(imports + "X = 1\n"))
    assert source_code_version(load(imports + "X = 1\n")) == first
    assert source_code_version(load(imports + "X = 2\n")) != first  # the module changed
    # an imported refinery module is part of the version: without it, the version differs
    assert source_code_version(load("X = 1\n")) != source_code_version(load("X = 1\n" + imports))
    sys.modules.pop("some_asset")


def test_code_references_become_git_links_when_a_repository_url_is_given():
    from refinery.assets.ml.training_dataset import training_dataset
    from refinery.defs.catalog import code_referenced

    def reference(environ):
        [assets_def] = code_referenced([training_dataset], environ)
        [ref] = (
            assets_def.specs_by_key[assets_def.key]
            .metadata["dagster/code_references"]
            .code_references
        )
        return ref

    local = reference({})
    assert local.file_path.endswith("refinery/assets/ml/training_dataset.py")
    linked = reference(
        {"REFINERY_GIT_URL": "https://github.com/acme/refinery/", "REFINERY_GIT_BRANCH": "ui"}
    )
    assert linked.url == (
        "https://github.com/acme/refinery/tree/ui/refinery/assets/ml/training_dataset.py"
        f"#L{local.line_number}"
    )


# --- partitions start at the first landed day ------------------------------------------------


def test_partitions_start_at_the_first_landed_day(tmp_path):
    import datetime as dt

    from refinery.partitions import DEFAULT_PARTITIONS_START, partitions_start

    today = dt.date(2026, 6, 1)

    def start(**environ):
        return partitions_start(environ, data_root=tmp_path, today=today)

    assert start() == DEFAULT_PARTITIONS_START  # nothing landed yet
    landing = tmp_path / "landing"
    for folder in (
        "events/1999-12-31",
        "events/2026-06-02",
        "events/2026-02-30",
        "events/latest",
        "users/2026-03-01",
    ):
        (landing / folder).mkdir(parents=True)
        (landing / folder / "x.jsonl").write_text("{}\n")
    (landing / "events/2026-01-01").mkdir()  # empty: nothing landed that day
    (landing / "events/2026-01-02").mkdir()
    (landing / "events/2026-01-02/.upload.tmp").write_text("")  # an upload in flight
    assert start() == "2026-03-01"  # not before 2000, not in the future, not a non-date
    (landing / "events/2026-04-10").mkdir()
    (landing / "events/2026-04-10/a.jsonl").write_text("{}\n")
    assert start() == "2026-03-01"
    # an ingested partition whose landing folder was pruned still counts
    (tmp_path / "lake/bronze/events/date=2026-02-14").mkdir(parents=True)
    assert start() == "2026-02-14"
    assert start(REFINERY_PARTITIONS_START="2025-01-01") == "2025-01-01"  # explicit wins
    # the data root is read only where REFINERY_DATA_DIR names it
    assert partitions_start({"REFINERY_DATA_DIR": str(tmp_path)}, today=today) == "2026-02-14"
    assert partitions_start({}, today=today) == DEFAULT_PARTITIONS_START
    import pytest

    with pytest.raises(ValueError, match="not a YYYY-MM-DD"):
        start(REFINERY_PARTITIONS_START="Jan 1")


def test_loading_the_code_location_reads_the_data_root_and_writes_nothing(tmp_path):
    """The code location, loaded the way `dagster` loads it, over a data root holding two
    landed days: partitions start at the first, and nothing under the data root changed."""
    import os
    import subprocess
    import sys

    root = tmp_path / "data"
    for day in ("2026-02-03", "2026-02-05"):
        (root / "landing/events" / day).mkdir(parents=True)
        (root / "landing/events" / day / "e.jsonl").write_text("{}\n")
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    env = {k: v for k, v in os.environ.items() if k != "REFINERY_PARTITIONS_START"}
    env["REFINERY_DATA_DIR"] = str(root)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "from refinery.definitions import defs\n"
                "job = defs.resolve_job_def('ingest_job')\n"
                "print(job.partitions_def.get_first_partition_key())"
            ),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "2026-02-03"
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_a_process_that_loads_the_code_location_exits_quietly(tmp_path):
    """Whether DuckDB is imported before or after the code location, a process that loads it and
    uses DuckDB exits without DuckDB's report of objects still alive ("nanobind: leaked ..." on
    stderr), which would otherwise end every CLI command's and run worker's log."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "REFINERY_DATA_DIR": str(tmp_path / "data")}
    for duckdb_first in (False, True):
        script = (
            ("import duckdb\n" if duckdb_first else "")
            + "import refinery.definitions\n"
            + "import duckdb\n"
            + "duckdb.connect().sql('select 1').fetchall()\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "leaked" not in result.stderr, result.stderr[-2000:]
