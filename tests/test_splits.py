"""Window selection, temporal splits and reproducible writing of training sets (no DVC here)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refinery.assets.ml.profile import build_profile
from refinery.assets.ml.splits import (
    CONTENT_FILES,
    LABEL_HORIZON_DAYS,
    SplitSpec,
    TrainingSetError,
    assign_split_dates,
    content_md5,
    feature_columns,
    file_md5,
    labelled_as_of_dates,
    list_as_of_partitions,
    read_training_examples,
    split_examples,
    upstream_partition_for,
    write_training_set,
)

START = date(2025, 3, 1)


def examples_frame(as_of_date: date, users: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(users)  # unsorted on purpose: the writer must sort
    return pl.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in ids],
            "as_of_date": [as_of_date] * users,
            "events_7d": rng.integers(0, 20, users),
            "spend_30d": rng.gamma(2.0, 30.0, users),
            "plan": rng.choice(["free", "plus", "pro"], users).tolist(),
            "label": rng.integers(0, 2, users).astype(np.int8),
        },
        schema_overrides={"events_7d": pl.Int64, "label": pl.Int8},
    )


def write_gold(gold_dir: Path, days: int, users: int = 12, seed: int = 0) -> None:
    for offset in range(days):
        as_of_date = START + timedelta(days=offset)
        path = gold_dir / f"as_of_date={as_of_date}" / "data.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        examples_frame(as_of_date, users, seed * 1000 + offset).write_parquet(path)


def build(gold_dir: Path, out_dir: Path, spec: SplitSpec, upstream: dict | None = None):
    partitions = list_as_of_partitions(gold_dir)
    split_dates = assign_split_dates(labelled_as_of_dates(partitions), spec)
    examples = read_training_examples(partitions, split_dates.used)
    splits = split_examples(examples, split_dates)
    features = [c["name"] for c in feature_columns(examples)]
    return write_training_set(
        out_dir,
        spec=spec,
        split_dates=split_dates,
        splits=splits,
        profile=build_profile(splits["train"], features),
        upstream=upstream or {"partitions": []},
    )


def test_default_window_takes_latest_labelled_dates_and_keeps_gaps() -> None:
    dates = [START + timedelta(days=i) for i in range(40)]
    split = assign_split_dates(dates, SplitSpec())
    assert split.window == tuple(dates[-28:])
    assert split.test == tuple(dates[-3:])
    assert split.validation == tuple(dates[-3 - 7 - 3 : -3 - 7])
    assert split.train == tuple(dates[-28 : -3 - 7 - 3 - 7])
    assert (split.validation[0] - split.train[-1]).days == LABEL_HORIZON_DAYS + 1
    assert (split.test[0] - split.validation[-1]).days == LABEL_HORIZON_DAYS + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gap_days": 6}, "shorter than the label horizon"),
        ({"test_days": 0}, "must both be at least 1"),
        ({"window_days": 20}, "leaves no train days"),
    ],
)
def test_spec_refuses_unsafe_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(TrainingSetError, match=message):
        SplitSpec(**kwargs)


def test_too_few_labelled_dates_says_how_many_are_needed() -> None:
    dates = [START + timedelta(days=i) for i in range(10)]
    with pytest.raises(TrainingSetError, match="Need 28 labelled as-of dates .* found 10"):
        assign_split_dates(dates, SplitSpec())


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.sets(st.integers(min_value=0, max_value=90), min_size=15, max_size=80),
    validation_days=st.integers(1, 6),
    test_days=st.integers(1, 6),
    gap_days=st.integers(LABEL_HORIZON_DAYS, 12),
    extra_window=st.integers(0, 30),
)
def test_splits_never_leak_across_the_gap(
    offsets: set[int], validation_days: int, test_days: int, gap_days: int, extra_window: int
) -> None:
    spec = SplitSpec(
        window_days=validation_days + test_days + 2 * gap_days + 1 + extra_window,
        validation_days=validation_days,
        test_days=test_days,
        gap_days=gap_days,
    )
    dates = [START + timedelta(days=o) for o in offsets]
    try:
        split = assign_split_dates(dates, spec)
    except TrainingSetError:
        return  # too few or too sparse dates: refusing is the safe answer
    gap = timedelta(days=gap_days)
    assert split.train and split.validation and split.test
    assert min(split.validation) > max(split.train) + gap
    assert min(split.test) > max(split.validation) + gap
    assert min(split.test) > max(split.train) + gap
    assert len(split.test) == test_days
    assert len(split.validation) <= validation_days
    assert set(split.used) <= set(split.window)
    assert split.window == tuple(sorted(set(dates))[-spec.window_days :])

    # and on rows: no (user, as-of date) lands in two splits
    users = ["a", "b"]
    frame = pl.DataFrame(
        {
            "user_id": [u for _ in split.window for u in users],
            "as_of_date": [d for d in split.window for _ in users],
            "x": [1.0] * (2 * len(split.window)),
            "label": [0] * (2 * len(split.window)),
        }
    )
    parts = split_examples(frame, split)
    keys = [set(zip(p["user_id"], p["as_of_date"], strict=True)) for p in parts.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_same_inputs_give_the_same_bytes_and_sorted_rows(tmp_path: Path) -> None:
    gold = tmp_path / "gold"
    write_gold(gold, days=30)
    spec = SplitSpec()
    first = build(gold, tmp_path / "a", spec)
    second = build(gold, tmp_path / "b", spec)
    assert first.file_md5s == second.file_md5s
    for name in first.file_md5s:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    train = pl.read_parquet(tmp_path / "a" / "train.parquet")
    assert train.columns == ["user_id", "as_of_date", "events_7d", "spend_30d", "plan", "label"]
    assert train.equals(train.sort(["as_of_date", "user_id"]))

    metadata = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert list(metadata) == sorted(metadata)
    assert metadata["content_md5"] == content_md5(
        {name: first.file_md5s[name] for name in CONTENT_FILES}
    )
    rows = {
        name: pl.read_parquet(tmp_path / "a" / f"{name}.parquet").height
        for name in metadata["splits"]
    }
    assert {name: s["rows"] for name, s in metadata["splits"].items()} == rows
    assert metadata["splits"]["train"]["label_rate"] == pytest.approx(
        train["label"].mean(), abs=1e-6
    )
    assert metadata["features"][2] == {"name": "plan", "dtype": "String", "kind": "categorical"}
    assert metadata["features"][0]["kind"] == "numeric"
    profile = json.loads((tmp_path / "a" / "profile.json").read_text())
    assert json.loads((tmp_path / "a" / "profile.json").read_text()) == profile


def test_new_data_changes_content_but_lineage_alone_does_not(tmp_path: Path) -> None:
    gold = tmp_path / "gold"
    write_gold(gold, days=30)
    spec = SplitSpec()
    base = build(gold, tmp_path / "base", spec, upstream={"run": "1"})
    relineaged = build(gold, tmp_path / "lineage", spec, upstream={"run": "2"})
    assert base.metadata["content_md5"] == relineaged.metadata["content_md5"]
    assert base.file_md5s["metadata.json"] != relineaged.file_md5s["metadata.json"]

    write_gold(gold, days=31, seed=1)  # one more labelled day: the window moves
    moved = build(gold, tmp_path / "moved", spec)
    assert moved.metadata["content_md5"] != base.metadata["content_md5"]
    assert moved.metadata["window"]["last_as_of_date"] == str(START + timedelta(days=30))
    assert file_md5(tmp_path / "moved" / "train.parquet") == moved.file_md5s["train.parquet"]


def test_unlabelled_dates_are_outside_the_window(tmp_path: Path) -> None:
    gold = tmp_path / "gold"
    write_gold(gold, days=29)
    last = START + timedelta(days=28)
    path = gold / f"as_of_date={last}" / "data.parquet"
    pl.read_parquet(path).with_columns(pl.lit(None, pl.Int8).alias("label")).write_parquet(path)
    partitions = list_as_of_partitions(gold)
    assert labelled_as_of_dates(partitions)[-1] == last - timedelta(days=1)


def test_added_feature_column_is_null_in_older_partitions(tmp_path: Path) -> None:
    gold = tmp_path / "gold"
    write_gold(gold, days=28)
    newest = START + timedelta(days=27)
    path = gold / f"as_of_date={newest}" / "data.parquet"
    frame = pl.read_parquet(path)
    frame.insert_column(4, pl.Series("sessions_7d", [1.5] * frame.height)).write_parquet(path)
    partitions = list_as_of_partitions(gold)
    examples = read_training_examples(partitions, sorted(partitions))
    assert examples.columns[-1] == "label"
    assert "sessions_7d" in examples.columns
    assert examples.filter(pl.col("as_of_date") < newest)["sessions_7d"].null_count() == 27 * 12


def test_broken_partitions_name_the_file(tmp_path: Path) -> None:
    gold = tmp_path / "gold"
    write_gold(gold, days=2)
    first = START
    path = gold / f"as_of_date={first}" / "data.parquet"
    frame = pl.read_parquet(path)
    pl.concat([frame, frame.head(1)]).write_parquet(path)
    partitions = list_as_of_partitions(gold)
    with pytest.raises(TrainingSetError, match=r"not unique.*as_of_date=2025-03-01"):
        read_training_examples(partitions, [first])

    frame.with_columns(pl.lit(2, pl.Int8).alias("label")).write_parquet(path)
    with pytest.raises(TrainingSetError, match=r"as_of_date=2025-03-01/data.parquet: .* not 0/1"):
        read_training_examples(partitions, [first])

    frame.drop("label").write_parquet(path)
    with pytest.raises(TrainingSetError, match=r"as_of_date=2025-03-01/data.parquet: no 'label'"):
        labelled_as_of_dates(partitions)


def test_upstream_partition_is_the_knowledge_date_of_the_label() -> None:
    assert upstream_partition_for(date(2025, 3, 1)) == "2025-03-11"
    assert upstream_partition_for(date(2025, 3, 1), lateness_days=0) == "2025-03-08"


def test_dates_without_a_full_feature_window_are_not_used():
    from refinery.assets.ml.splits import with_full_feature_window

    dates = [date(2026, 1, 1) + timedelta(days=i) for i in range(40)]
    usable = with_full_feature_window(dates, date(2026, 1, 1), 30)
    assert usable[0] == date(2026, 1, 30) and usable[-1] == dates[-1]
    assert with_full_feature_window(dates, None, 30) == []


# --- the training set's checks (split_checks.py): each passes on real splits and fails on a
# case built to break it ---------------------------------------------------------------------


def built_splits(tmp_path: Path) -> dict[str, pl.DataFrame]:
    from refinery.assets.ml.split_checks import read_written_splits

    write_gold(tmp_path / "gold", days=30, users=40)
    written = build(tmp_path / "gold", tmp_path / "out", SplitSpec())
    return read_written_splits(written.directory)


def outcomes_by_name(splits, gap_days=LABEL_HORIZON_DAYS, **kw):
    from refinery.assets.ml.split_checks import evaluate_split_checks

    return {o.name: o for o in evaluate_split_checks(splits, gap_days, **kw)}


def test_split_checks_pass_on_the_splits_as_written(tmp_path: Path) -> None:
    outcomes = outcomes_by_name(built_splits(tmp_path))
    assert all(o.passed for o in outcomes.values()), outcomes
    gaps = outcomes["split_gaps"].metadata
    assert gaps["gap_train_validation_days"] == gaps["gap_validation_test_days"] == 7
    assert outcomes["splits_disjoint"].blocking and outcomes["split_gaps"].blocking
    assert not outcomes["split_label_rates"].blocking


def test_disjoint_fails_on_a_shared_row_and_on_a_shared_date(tmp_path: Path) -> None:
    splits = built_splits(tmp_path)
    leaked_row = {**splits, "validation": pl.concat([splits["validation"], splits["train"][:1]])}
    outcome = outcomes_by_name(leaked_row)["splits_disjoint"]
    assert not outcome.passed and outcome.severity == "ERROR"
    assert outcome.metadata == {"overlapping_rows": 1, "overlapping_as_of_dates": 1}
    # the same as-of date in two splits, no row in both (other users)
    last_train = splits["train"].filter(pl.col("as_of_date") == pl.col("as_of_date").max())
    moved = last_train.with_columns(pl.format("other-{}", "user_id").alias("user_id"))
    shared_date = {**splits, "test": pl.concat([splits["test"], moved])}
    outcome = outcomes_by_name(shared_date)["splits_disjoint"]
    assert not outcome.passed
    assert outcome.metadata["overlapping_rows"] == 0
    assert outcome.metadata["overlapping_as_of_dates"] == 1
    assert str(last_train["as_of_date"][0]) in outcome.description


def test_gaps_fail_when_a_split_comes_too_close_or_is_empty(tmp_path: Path) -> None:
    splits = built_splits(tmp_path)
    # validation shifted one day earlier: 6 days between train and validation, 8 before test
    early = splits["validation"].with_columns(pl.col("as_of_date") - timedelta(days=1))
    outcome = outcomes_by_name({**splits, "validation": early})["split_gaps"]
    assert not outcome.passed and outcome.severity == "ERROR"
    assert outcome.metadata["gap_train_validation_days"] == 6
    assert outcome.metadata["gap_validation_test_days"] == 8
    assert "6 days between, 7 required" in outcome.description
    # a longer required gap than the splits were cut with fails too
    assert not outcomes_by_name(splits, gap_days=8)["split_gaps"].passed
    empty = outcomes_by_name({**splits, "test": splits["test"].clear()})["split_gaps"]
    assert not empty.passed and empty.metadata["empty_splits"] == ["test"]


def test_label_rates_error_on_one_class_and_warn_on_a_far_rate(tmp_path: Path) -> None:
    splits = built_splits(tmp_path)
    rates = outcomes_by_name(splits)["split_label_rates"]
    train_rate = splits["train"]["label"].mean()
    assert rates.metadata["train_label_rate"] == round(train_rate, 4)

    no_positives = splits["test"].with_columns(pl.lit(0, pl.Int8).alias("label"))
    outcome = outcomes_by_name({**splits, "test": no_positives})["split_label_rates"]
    assert not outcome.passed and outcome.severity == "ERROR"
    assert "one class only in test (label rate 0%)" in outcome.description

    # a quarter of the test positives kept: rate about train/4, outside the default 2x band
    positives = splits["test"].filter(pl.col("label") == 1)
    keep = positives.height // 4
    thinned = pl.concat(
        [
            splits["test"].filter(pl.col("label") == 0),
            positives[:keep],
            positives[keep:].with_columns(pl.lit(0, pl.Int8).alias("label")),
        ]
    )
    outcome = outcomes_by_name({**splits, "test": thinned})["split_label_rates"]
    assert not outcome.passed and outcome.severity == "WARN"
    assert "test" in outcome.description and "validation" not in outcome.description
    assert outcomes_by_name({**splits, "test": thinned}, max_ratio=10)["split_label_rates"].passed


# --- the real asset: column schema, splits table, checks; an ERROR check publishes nothing --


def materialize_training_set(root: Path, instance=None):
    from dagster import DagsterInstance, RunConfig, materialize

    from refinery.assets.ml.training_dataset import TrainingDatasetConfig, training_dataset
    from refinery.resources import LakeResource
    from refinery.resources.lake import LakePaths, write_parquet_atomic
    from refinery.resources.registry import DvcRegistry

    first = LakePaths(root).partition_file("silver", "events", str(START))
    write_parquet_atomic(pl.DataFrame({"event_id": ["e0"]}), first)  # the lake's first day
    return materialize(
        [training_dataset],
        instance=instance or DagsterInstance.ephemeral(),
        resources={"lake": LakeResource(data_dir=str(root)), "dvc_registry": DvcRegistry()},
        run_config=RunConfig(
            ops={
                "ml__training_dataset": TrainingDatasetConfig(window_days=21, feature_warmup_days=0)
            }
        ),
        raise_on_error=False,
    )


def check_evaluations(result) -> dict:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_asset_records_schema_split_table_and_checks(tmp_path: Path) -> None:
    from dagster import TableSchema

    root = tmp_path / "data"
    write_gold(root / "lake/gold/training_examples", days=21, users=30, seed=3)
    result = materialize_training_set(root)
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    schema = metadata["dagster/column_schema"].value
    assert isinstance(schema, TableSchema)
    types = {c.name: c.type for c in schema.columns}
    assert types == {
        "user_id": "String",
        "as_of_date": "Date",
        "events_7d": "Int64",
        "spend_30d": "Float64",
        "plan": "String",
        "label": "Int8",
    }
    assert not any(c.constraints.nullable for c in schema.columns)
    table = metadata["splits"].value
    assert [r.data["split"] for r in table.records] == ["train", "validation", "test"]
    train = pl.read_parquet(root / "lake/ml/training_dataset/train.parquet")
    assert table.records[0].data["rows"] == train.height
    assert table.records[0].data["label_rate"] == round(train["label"].mean(), 4)
    assert not any(key.startswith(("train_", "validation_", "test_")) for key in metadata)
    assert {r.data["file"] for r in metadata["files"].value.records} == {
        "train.parquet",
        "validation.parquet",
        "test.parquet",
        "profile.json",
        "metadata.json",
    }
    checks = check_evaluations(result)
    assert set(checks) == {"splits_disjoint", "split_gaps", "split_label_rates"}
    assert all(c.passed for c in checks.values())


def test_a_test_split_without_positives_fails_its_check_with_severity_error(
    tmp_path: Path,
) -> None:
    from refinery.datasets import latest_version

    root = tmp_path / "data"
    gold = root / "lake/gold/training_examples"
    write_gold(gold, days=21, users=30, seed=4)
    for offset in range(18, 21):  # the 3 test days: nobody buys
        path = gold / f"as_of_date={START + timedelta(days=offset)}" / "data.parquet"
        pl.read_parquet(path).with_columns(pl.lit(0, pl.Int8).alias("label")).write_parquet(path)
    result = materialize_training_set(root)
    assert result.success
    checks = check_evaluations(result)
    labels = checks["split_label_rates"]
    assert not labels.passed and labels.severity.value == "ERROR"
    assert "one class only in test" in labels.description
    assert checks["splits_disjoint"].passed and checks["split_gaps"].passed
    assert latest_version(registry=root / "registry") == "training_set@v1.0.0"  # not blocking


def test_a_cutter_that_leaks_rows_is_stopped_before_the_publish(tmp_path: Path, monkeypatch):
    """A bug injected into the cut (a train row copied into validation): the blocking check
    fails on the files as written, the run fails and the registry stays empty."""
    import refinery.assets.ml.training_dataset as module
    from refinery.datasets import latest_version

    cut = module.split_examples

    def leaky(examples, split_dates):
        splits = cut(examples, split_dates)
        return {**splits, "validation": pl.concat([splits["validation"], splits["train"][:2]])}

    monkeypatch.setattr(module, "split_examples", leaky)
    root = tmp_path / "data"
    write_gold(root / "lake/gold/training_examples", days=21, users=30, seed=5)
    result = materialize_training_set(root)
    assert not result.success
    checks = check_evaluations(result)
    assert not checks["splits_disjoint"].passed
    assert checks["splits_disjoint"].metadata["overlapping_rows"].value == 2
    assert latest_version(registry=root / "registry") is None
    assert (root / "lake/ml/training_dataset/validation.parquet").exists()  # there to look at
