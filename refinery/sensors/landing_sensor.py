"""landing_sensor: ingest each arrival date once, and again only if its files change."""

import json

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    sensor,
)

from refinery import settings
from refinery.assets.gold import gold_assets
from refinery.assets.ml.drift_report import REPORT_KEY
from refinery.assets.online import ONLINE_KEY
from refinery.partitions import PARTITIONS_START, daily_partitions
from refinery.resources import LakeResource
from refinery.sensors import sensor_interval
from refinery.sensors.landing import new_arrivals, survey_landing

# Every dbt model of the gold group: the marts read staging views that must exist too.
GOLD_KEYS = sorted({key for assets_def in gold_assets for key in assets_def.keys})

ingest_job = define_asset_job(
    "ingest_job",
    selection=[
        AssetKey([layer, t])
        for layer in ("bronze", "silver")
        for t in ("events", "users", "products")
    ]
    + GOLD_KEYS
    + [ONLINE_KEY, REPORT_KEY],
    partitions_def=daily_partitions,
    description="bronze → silver → gold → online store for one arrival date, then the drift report "
    "over the newest gold days (what landing_sensor requests).",
)


def assets_for(sources: tuple[str, ...]) -> list[AssetKey]:
    """The arrival's own bronze/silver tables, then gold (which reads whatever silver holds),
    the online store and the drift report over the new gold days. The report is part of the
    same run, not a second run the automation sensor would launch after it: on a daily lake a
    run launch (queue, process, imports) costs more than the report itself."""
    keys = [AssetKey([layer, s]) for s in sources for layer in ("bronze", "silver")]
    if "events" in sources:
        keys += [*GOLD_KEYS, ONLINE_KEY, REPORT_KEY]
    return keys


@sensor(
    name="landing_sensor",
    job=ingest_job,
    minimum_interval_seconds=sensor_interval(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests one ingest run per new (or changed) arrival date in landing/.",
)
def landing_sensor(context: SensorEvaluationContext, lake: LakeResource):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    settle = settings.LANDING_SETTLE_SECONDS.get()
    survey = survey_landing(
        lake.paths.landing,
        settle_seconds=settle,
        first_partition=PARTITIONS_START,
        last_partition=daily_partitions.get_last_partition_key(),
    )
    ingested = context.instance.get_materialized_partitions(AssetKey(["bronze", "events"]))
    todo, cursor = new_arrivals(survey.arrivals, seen, ingested)
    not_ingestible = f"; not ingestible: {'; '.join(survey.unusable)}" if survey.unusable else ""
    if survey.unusable:
        context.log.warning(f"landing entries that will not be ingested: {survey.unusable}")
    if not todo:
        waiting = f"; still settling: {', '.join(survey.settling)}" if survey.settling else ""
        return SensorResult(
            skip_reason=f"no new arrival dates in {lake.paths.landing} "
            f"({len(survey.arrivals)} dates landed, all ingested or requested){waiting}"
            f"{not_ingestible}"[:2000],
            cursor=json.dumps(cursor, sort_keys=True),
        )
    requests = []
    for arrival in todo:
        requests.append(
            RunRequest(
                run_key=f"landing-{arrival.date}-{arrival.fingerprint}",
                partition_key=arrival.date,
                asset_selection=assets_for(arrival.sources),
                tags={"refinery/trigger": "landing", "refinery/sources": ",".join(arrival.sources)},
            )
        )
    return SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))
