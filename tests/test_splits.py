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
