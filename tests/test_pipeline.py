"""The materialized graph, through Dagster: synth data with faults → bronze → silver → gold.

Ground truth comes from refinery-synth's manifest: which line of which file holds which fault.
"""

import json
import os
import subprocess
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from refinery.synth import SynthConfig, generate

pytestmark = pytest.mark.slow

START = date(2026, 3, 2)
DAYS = 14
MISSING_COLUMN_DAY = 13  # the users snapshot of the last day lacks `plan`

# synth's fault kinds → the quarantine reason silver must give them (None: a valid line)
EXPECTED_REASON = {
    "malformed_json": {"malformed_json"},
    "invalid_utf8": {"invalid_utf8"},
    "missing_required_field": {"missing_required_field"},
    "wrong_type": {"invalid_type", "invalid_event_time"},
    "unknown_event_type": {"unknown_event_type"},
    "negative_amount": {"negative_amount"},
    "future_timestamp": {"future_event_time"},
    "bad_timezone": {"invalid_event_time"},
}

BRONZE_SILVER = [
    AssetKey([layer, t]) for layer in ("bronze", "silver") for t in ("events", "users", "products")
]
from refinery.sensors.landing_sensor import GOLD_KEYS as GOLD


def day(i: int) -> str:
    return (START + timedelta(days=i)).isoformat()


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    old = os.environ.get("REFINERY_DATA_DIR")
    os.environ["REFINERY_DATA_DIR"] = str(root)
    generate(
        SynthConfig(
            start=START,
            days=DAYS,
            users=250,
            events_per_day=2_500,
            seed=11,
            fault_rate=0.01,
            empty_file_days=(3,),
            truncated_gzip_days=(5,),
            users_missing_column_days=(MISSING_COLUMN_DAY,),
        ),
        root,
    )
    from refinery.definitions import defs

    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ingest_job")
    results = {}
    for i in range(DAYS - 1):
        results[day(i)] = job.execute_in_process(
            partition_key=day(i),
            instance=instance,
            asset_selection=BRONZE_SILVER,
            raise_on_error=False,
        )
    # gold for the range in one dbt run, as a backfill does
    gold = job.execute_in_process(
        instance=instance,
        asset_selection=GOLD,
        tags={
            "dagster/asset_partition_range_start": day(0),
            "dagster/asset_partition_range_end": day(DAYS - 2),
        },
        raise_on_error=False,
    )
    # the last day: everything in one run, with a broken users snapshot
    last = job.execute_in_process(
        partition_key=day(DAYS - 1), instance=instance, raise_on_error=False
    )
    yield {
        "root": root,
        "defs": defs,
        "instance": instance,
        "runs": results,
        "gold": gold,
        "last": last,
    }
    if old is None:
        os.environ.pop("REFINERY_DATA_DIR", None)
    else:
        os.environ["REFINERY_DATA_DIR"] = old


def check_evaluations(result) -> dict[tuple[str, str], bool]:
    out = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            out[(ev.asset_key.to_user_string(), ev.check_name)] = ev.passed
    return out


def test_every_day_ingests_and_blocking_checks_pass(lake):
    for partition, result in lake["runs"].items():
        assert result.success, partition
        checks = check_evaluations(result)
        for table in ("events", "users", "products"):
            for name in ("row_accounting", "contract", "quarantine_rate"):
                assert checks[(f"silver/{table}", name)], (partition, table, name)
            assert checks[(f"bronze/{table}", "contract")]


def test_accounting_invariant_per_partition_and_in_total(lake):
    root = lake["root"]
    totals = {"bronze": 0, "silver": 0, "quarantine": 0, "duplicates": 0}
    for i in range(DAYS - 1):
        part = {
            "bronze": pl.scan_parquet(root / f"lake/bronze/events/date={day(i)}/*.parquet"),
            "silver": pl.scan_parquet(root / f"lake/silver/events/date={day(i)}/part-*.parquet"),
            "quarantine": pl.scan_parquet(
                root / f"lake/quarantine/events/date={day(i)}/part-0.parquet"
            ),
            "duplicates": pl.scan_parquet(
                root / f"lake/quarantine/events/date={day(i)}/duplicates.parquet"
            ),
        }
        counts = {k: v.select(pl.len()).collect().item() for k, v in part.items()}
        assert counts["bronze"] == counts["silver"] + counts["quarantine"] + counts["duplicates"]
        for k in totals:
            totals[k] += counts[k]
    assert totals["bronze"] == totals["silver"] + totals["quarantine"] + totals["duplicates"]
    # event ids are unique across the whole silver table (re-deliveries were deduplicated)
    ids = (
        pl.scan_parquet(root / "lake/silver/events/date=*/part-*.parquet")
        .select("event_id")
        .collect()
    )
    assert ids.height == ids["event_id"].n_unique()


def test_each_injected_fault_lands_in_quarantine_with_its_reason(lake):
    root = lake["root"]
    for i in range(DAYS - 1):
        manifest = json.loads((root / f"landing/_manifest/{day(i)}.json").read_text())
        quarantine = pl.read_parquet(root / f"lake/quarantine/events/date={day(i)}/part-0.parquet")
        duplicates = pl.read_parquet(
            root / f"lake/quarantine/events/date={day(i)}/duplicates.parquet"
        )
        reason_at = {
            (Path(f).name, n): r
            for f, n, r in quarantine.select(
                "_source_file", "_line", "quarantine_reason"
            ).iter_rows()
        }
        duplicate_at = {
            (Path(f).name, n) for f, n in duplicates.select("_source_file", "_line").iter_rows()
        }
        for file in manifest["files"]:
            for kind, spec in file.get("faults", {}).items():
                for line in spec["lines"]:
                    where = (file["file"], line)
                    if kind == "extra_fields":
                        assert where not in reason_at and where not in duplicate_at, where
                    elif kind == "duplicate_line":
                        assert where in duplicate_at, where
                    else:
                        assert reason_at.get(where) in EXPECTED_REASON[kind], (
                            where,
                            kind,
                            reason_at.get(where),
                        )
            for line in file.get("redelivered", {}).get("lines", []):
                assert (file["file"], line) in duplicate_at
        if manifest["day_faults"]["empty_file"]:
            assert "empty_file" in set(reason_at.values())
        if manifest["day_faults"]["truncated_gzip"]:
            assert "truncated_gzip" in set(reason_at.values())


def test_gold_backfill_exports_features_labels_and_examples(lake):
    assert lake["gold"].success
    checks = check_evaluations(lake["gold"])
    assert checks and all(checks.values()), {k: v for k, v in checks.items() if not v}
    root = lake["root"]
    features = pl.read_parquet(root / "lake/gold/user_daily_features/as_of_date=*/data.parquet")
    assert features.select("as_of_date").n_unique() == DAYS - 1
    assert features.height == features.select("user_id", "as_of_date").n_unique()
    marts = [
        e.event_specific_data.materialization
        for e in lake["gold"].all_events
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
        and e.asset_key.to_user_string() in ("gold/user_daily_features", "gold/training_examples")
    ]
    assert len(marts) == 2 * (DAYS - 1)  # one per partition of the range
    gold = root / "lake" / "gold"
    for materialization in marts:
        meta = {k: v.value for k, v in materialization.metadata.items()}
        assert meta["quality/completeness"] == 1.0 and meta["quality/consistency"] == 1.0
        assert 0.0 <= meta["quality/freshness"] < 1.0
        assert meta["rows_in_run"] > 0
        # each partition: the rows of its own as-of date (none yet for early training examples)
        model = materialization.asset_key.path[-1]
        own = gold / model / f"as_of_date={meta['as_of_date']}" / "data.parquet"
        assert meta["dagster/row_count"] == (pl.read_parquet(own).height if own.exists() else 0)
    examples = pl.read_parquet(root / "lake/gold/training_examples/as_of_date=*/data.parquet")
    # labels need 7 days of horizon + 3 of lateness: as-of dates up to (last ingested - 10)
    assert examples["as_of_date"].max() == date.fromisoformat(day(DAYS - 2)) - timedelta(days=10)
    assert set(examples["label"].unique().to_list()) <= {0, 1}


def test_a_contract_breach_blocks_what_is_downstream(lake):
    last = lake["last"]
    assert not last.success
    checks = check_evaluations(last)
    assert checks[("silver/users", "quarantine_rate")] is False
    materialized = {
        e.asset_key.to_user_string()
        for e in last.all_events
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
    }
    assert "silver/users" in materialized  # written, and its quarantine names the reason
    assert not any(k.startswith("gold/") for k in materialized)  # gold did not run
    description = next(
        e.event_specific_data.description
        for e in last.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        and e.event_specific_data.check_name == "quarantine_rate"
        and e.event_specific_data.asset_key == AssetKey(["silver", "users"])
    )
    assert "missing_column" in description and "users.csv" in description


def test_dagster_cli_materializes_a_selection(lake, tmp_path):
    """The real `dagster asset materialize --select` (Dagster's antlr selection grammar)."""
    env = {**os.environ, "REFINERY_DATA_DIR": str(lake["root"]), "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.run(
        [
            "dagster",
            "asset",
            "materialize",
            "-m",
            "refinery.definitions",
            "--select",
            'key:"bronze/products" or key:"silver/products"',
            "--partition",
            day(1),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
