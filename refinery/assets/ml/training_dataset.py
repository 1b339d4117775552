"""`ml/training_dataset`: a temporal split of gold training_examples, published to the registry.

The asset reads the gold Parquet (not through an IO manager), cuts the window with the pure
functions of `splits.py`, then, holding the DVC registry's lock, writes `lake/ml/training_dataset/`
and publishes it as the next version. Unchanged content (same splits and profile) publishes no
new version.
"""

import json
from datetime import date
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Config,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableRecord,
    TableSchema,
    asset,
)
from pydantic import Field

from refinery import settings
from refinery.assets.ml.profile import build_profile
from refinery.assets.ml.split_checks import (
    DEFAULT_MAX_LABEL_RATE_RATIO,
    DISJOINT,
    GAPS,
    LABEL_RATES,
    CheckOutcome,
    evaluate_split_checks,
    read_written_splits,
)
from refinery.assets.ml.splits import (
    DEFAULT_LABEL_LATENESS_DAYS,
    KEY_COLUMNS,
    LABEL_COLUMN,
    LABEL_HORIZON_DAYS,
    SPLIT_NAMES,
    SplitSpec,
    TrainingSetError,
    assign_split_dates,
    feature_columns,
    labelled_as_of_dates,
    list_as_of_partitions,
    read_training_examples,
    split_examples,
    upstream_partition_for,
    with_full_feature_window,
    write_training_set,
)
from refinery.faults import kill_point
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths
from refinery.resources.registry import DvcRegistry

TRAINING_EXAMPLES = AssetKey(["gold", "training_examples"])
TRAINING_SET_KEY = AssetKey(["ml", "training_dataset"])
FLOAT_DIGITS = 4  # label rates and shares in the UI; metadata.json keeps 6


class TrainingDatasetConfig(Config):
    window_days: int = Field(
        default_factory=settings.TRAINING_WINDOW_DAYS.get,
        description="Latest labelled as-of dates to use.",
    )
    validation_days: int = Field(default=3, description="Newest-but-test as-of dates.")
    test_days: int = Field(default=3, description="Newest as-of dates of the window.")
    gap_days: int = Field(
        default=LABEL_HORIZON_DAYS,
        description=f"Calendar days between splits; at least the label horizon "
        f"({LABEL_HORIZON_DAYS}).",
    )
    feature_warmup_days: int = Field(
        default_factory=settings.FEATURE_WARMUP_DAYS.get,
        description="Skip as-of dates closer than this to the first day of data: their windowed "
        "features (30-day windows) are not yet complete.",
    )
    label_lateness_days: int = Field(
        default=DEFAULT_LABEL_LATENESS_DAYS,
        description="Allowed lateness of the labels: gold partition P writes as-of date "
        "P - horizon - lateness (used to find the upstream materializations).",
    )
    max_label_rate_ratio: float = Field(
        default=DEFAULT_MAX_LABEL_RATE_RATIO,
        description="split_label_rates warns when validation's or test's label rate is more "
        "than this factor away from train's.",
    )


def first_arrival(paths: LakePaths) -> date | None:
    """The first arrival date in silver/events: where the lake's history starts."""
    partitions = paths.existing_partitions("silver", "events")
    return date.fromisoformat(partitions[0]) if partitions else None


def latest_upstream_materializations(
    instance: DagsterInstance, partitions: list[str]
) -> dict[str, dict[str, Any] | None]:
    """The newest materialization of gold/training_examples for each partition (None if never)."""
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(partitions)
    cursor = None
    while partitions:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=TRAINING_EXAMPLES, asset_partitions=partitions),
            limit=1000,
            cursor=cursor,
        )
        for record in result.records:
            if found.get(record.partition_key) is None and record.partition_key in found:
                found[record.partition_key] = {
                    "storage_id": record.storage_id,
                    "run_id": record.run_id,
                }
        if not result.has_more or all(found.values()):
            break
        cursor = result.cursor
    return found


CHECK_SPECS = [
    AssetCheckSpec(
        DISJOINT,
        asset=TRAINING_SET_KEY,
        blocking=True,
        description="No (user_id, as_of_date) row and no as-of date is in two splits (read "
        "back from the written Parquet before publishing; a failure publishes nothing).",
    ),
    AssetCheckSpec(
        GAPS,
        asset=TRAINING_SET_KEY,
        blocking=True,
        description="More than gap_days calendar days between train and validation and between "
        "validation and test; no split is empty (a failure publishes nothing).",
    ),
    AssetCheckSpec(
        LABEL_RATES,
        asset=TRAINING_SET_KEY,
        description="Each split's label rate; warns when validation's or test's is more than "
        "max_label_rate_ratio away from train's, errors when a split has one class only.",
    ),
]


def check_result(outcome: CheckOutcome) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=TRAINING_SET_KEY,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata=outcome.metadata,
    )


COLUMN_DESCRIPTIONS = {
    "user_id": "user key",
    "as_of_date": "as-of date D: features know the data that arrived up to the end of D",
    LABEL_COLUMN: "1 if the user purchases in D+1..D+7 (arrivals up to D+10 count), else 0",
}


def upstream_column_descriptions(context: AssetExecutionContext) -> dict[str, str]:
    """Column descriptions of gold/training_examples as dbt documents them (empty when the
    asset runs in a job without gold's definitions, as in unit tests)."""
    graph = context.job_def.asset_layer.asset_graph
    if not graph.has(TRAINING_EXAMPLES):
        return {}
    schema = graph.get(TRAINING_EXAMPLES).metadata.get("dagster/column_schema")
    columns = getattr(schema, "columns", None) or []
    return {c.name: c.description for c in columns if c.description}


def column_schema(frames: dict[str, Any], described: dict[str, str] | None = None) -> TableSchema:
    """The columns of the split files, with their Polars types (the types in the files);
    nullable where a split has a null (keys and the label never do). Descriptions: gold's dbt
    documentation of the column, else its role."""
    described = described or {}
    train = frames["train"]
    columns = []
    for name, dtype in train.schema.items():
        nulls = sum(int(frame[name].null_count()) for frame in frames.values())
        kind = "categorical" if str(dtype) == "String" else "numeric"
        own = COLUMN_DESCRIPTIONS.get(name) if name in (*KEY_COLUMNS, LABEL_COLUMN) else None
        columns.append(
            TableColumn(
                name=name,
                type=str(dtype),
                description=own or described.get(name) or f"{kind} feature",
                constraints=TableColumnConstraints(nullable=nulls > 0),
                tags={
                    "role": "key"
                    if name in KEY_COLUMNS
                    else "label"
                    if name == LABEL_COLUMN
                    else "feature"
                },
            )
        )
    return TableSchema(columns=columns)


SPLIT_TABLE_SCHEMA = TableSchema(
    columns=[
        TableColumn("split", "string"),
        TableColumn("rows", "int"),
        TableColumn("positives", "int"),
        TableColumn("label_rate", "float", description=f"rounded to {FLOAT_DIGITS} digits"),
        TableColumn("users", "int"),
        TableColumn("as_of_dates", "int"),
        TableColumn("first_as_of_date", "string"),
        TableColumn("last_as_of_date", "string"),
    ]
)


def split_table(metadata: dict[str, Any]) -> MetadataValue:
    """One row per split (was 16 flat keys)."""
    records = []
    for name in SPLIT_NAMES:
        split = metadata["splits"][name]
        rate = split["label_rate"]
        records.append(
            TableRecord(
                {
                    "split": name,
                    "rows": split["rows"],
                    "positives": split["positives"],
                    "label_rate": round(rate, FLOAT_DIGITS) if rate is not None else None,
                    "users": split["users"],
                    "as_of_dates": split["as_of_dates"],
                    "first_as_of_date": split["first_as_of_date"] or "",
                    "last_as_of_date": split["last_as_of_date"] or "",
                }
            )
        )
    return MetadataValue.table(records, schema=SPLIT_TABLE_SCHEMA)


def files_table(file_md5s: dict[str, str]) -> MetadataValue:
    return MetadataValue.table(
        [TableRecord({"file": name, "md5": md5}) for name, md5 in sorted(file_md5s.items())],
        schema=TableSchema(columns=[TableColumn("file", "string"), TableColumn("md5", "string")]),
    )


@asset(
    key=TRAINING_SET_KEY,
    group_name="ml",
    deps=[TRAINING_EXAMPLES],
    pool="dvc_registry",
    kinds={"polars", "parquet", "dvc"},
    check_specs=CHECK_SPECS,
    description=__doc__,
)
def training_dataset(
    context: AssetExecutionContext,
    config: TrainingDatasetConfig,
    lake: LakeResource,
    dvc_registry: DvcRegistry,
):
    paths = lake.paths
    spec = SplitSpec(
        window_days=config.window_days,
        validation_days=config.validation_days,
        test_days=config.test_days,
        gap_days=config.gap_days,
    )
    partitions = list_as_of_partitions(paths.gold_dir("training_examples"))
    labelled = labelled_as_of_dates(partitions)
    first = first_arrival(paths)
    usable = with_full_feature_window(labelled, first, config.feature_warmup_days)
    if len(usable) < spec.window_days:
        raise TrainingSetError(
            f"Need {spec.window_days} labelled as-of dates with a full feature window, found "
            f"{len(usable)}: {len(labelled)} labelled in {paths.gold_dir('training_examples')}, "
            f"minus those within feature_warmup_days={config.feature_warmup_days} of the first "
            f"arrival ({first or 'no silver/events yet'}). Ingest more days, or lower window_days "
            "(REFINERY_TRAINING_WINDOW_DAYS)."
        )
    split_dates = assign_split_dates(usable, spec)
    examples = read_training_examples(partitions, split_dates.used)
    splits = split_examples(examples, split_dates)
    features = [column["name"] for column in feature_columns(examples)]

    upstream_partitions = {
        upstream_partition_for(as_of, config.label_lateness_days): as_of
        for as_of in split_dates.used
    }
    materializations = latest_upstream_materializations(
        context.instance, sorted(upstream_partitions)
    )
    upstream = {
        "asset_key": TRAINING_EXAMPLES.to_user_string(),
        "partitions": [
            {
                "partition": partition,
                "as_of_date": upstream_partitions[partition].isoformat(),
                "materialization": materializations[partition],
            }
            for partition in sorted(upstream_partitions)
        ],
    }
    never = [p for p, m in materializations.items() if m is None]
    if never:
        context.log.warning(
            f"{len(never)} gold/training_examples partitions used have no materialization in "
            f"this Dagster instance (e.g. {never[0]}); their lineage is recorded as null."
        )

    lineage = _lineage_text(context.run.run_id, upstream)
    # written and published under the registry's lock: a concurrent run cannot replace the
    # folder between the write and the publish, so a version's message describes its own data
    with dvc_registry.rooted_at(paths).transaction() as publish:
        written = write_training_set(
            paths.lake / "ml" / "training_dataset",
            spec=spec,
            split_dates=split_dates,
            splits=splits,
            profile=build_profile(splits["train"], features),
            upstream=upstream,
        )
        kill_point("training_dataset.after_write")
        outcomes = evaluate_split_checks(
            read_written_splits(written.directory), spec.gap_days, config.max_label_rate_ratio
        )
        # a failed blocking check (rows or dates in two splits, a gap too short) stops the
        # publish; split_label_rates is recorded (ERROR or WARN) and the version published
        blocked = [o for o in outcomes if o.blocking and not o.passed]
        if blocked:
            # the check results are recorded, then the run fails: nothing is published
            for outcome in outcomes:
                yield check_result(outcome)
            raise TrainingSetError(
                "blocking check(s) failed, nothing published: "
                + "; ".join(f"{o.name}: {o.description}" for o in blocked)
                + f". The written files are in {written.directory}."
            )
        snapshot = publish(written.directory, lineage=lineage)
    if not snapshot.created:
        context.log.info(
            f"Content md5 {snapshot.content_md5} equals {snapshot.tag}: no new version."
        )
    metadata = written.metadata
    yield MaterializeResult(
        metadata={
            "version_tag": snapshot.tag,
            "version": snapshot.version,
            "new_version": snapshot.created,
            "git_commit": snapshot.commit,
            "content_md5": snapshot.content_md5,
            "registry": MetadataValue.path(str(snapshot.registry)),
            "remote": snapshot.remote_url,
            "files": files_table(snapshot.file_md5s),
            "fetch_command": snapshot.fetch_commands["refinery"],
            "dvc_get_command": snapshot.fetch_commands["dvc_get"],
            "dvc_artifacts_get_command": snapshot.fetch_commands["dvc_artifacts_get"],
            "window": f"{metadata['window']['first_as_of_date']}.."
            f"{metadata['window']['last_as_of_date']}",
            "gap_days": spec.gap_days,
            "features": len(features),
            "upstream_partitions": len(upstream_partitions),
            "splits": split_table(metadata),
            "dagster/column_schema": column_schema(splits, upstream_column_descriptions(context)),
            "dagster/row_count": sum(metadata["splits"][name]["rows"] for name in SPLIT_NAMES),
        },
        check_results=[check_result(o) for o in outcomes],
    )


def _lineage_text(run_id: str, upstream: dict[str, Any]) -> str:
    materialized = [p for p in upstream["partitions"] if p["materialization"]]
    return (
        f"Dagster run: {run_id}\n"
        f"Upstream: {upstream['asset_key']} partitions "
        f"{upstream['partitions'][0]['partition']}..{upstream['partitions'][-1]['partition']} "
        f"({len(materialized)}/{len(upstream['partitions'])} with a materialization)\n"
        + json.dumps(upstream, sort_keys=True)
    )
