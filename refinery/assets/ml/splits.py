"""Temporal train / validation / test splits of gold `training_examples`, written reproducibly.

Everything here is pure (frames, dates and files in, frames, dates and files out) so the
Dagster asset in `training_dataset.py` only wires configuration, lineage and the registry.

Split rule. The window is the latest `window_days` *labelled* as-of dates. Inside it, counted
from the newest date backwards: `test_days` dates for test, then a gap, then `validation_days`
dates for validation, then a gap, then everything older for train. Gaps are calendar days, so
for every train date `t`, validation date `v` and test date `s`: `v > t + gap_days` and
`s > v + gap_days`. With `gap_days >= 7` (the label horizon) the label window of a train row
(t+1..t+7) ends before the first validation as-of date: no label of one split is built from
days that the next split already sees as features.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from refinery.resources.lake import replace_dir_atomic, write_parquet_atomic

LABEL_HORIZON_DAYS = 7
DEFAULT_LABEL_LATENESS_DAYS = 3
SPLIT_NAMES = ("train", "validation", "test")
KEY_COLUMNS = ("user_id", "as_of_date")
LABEL_COLUMN = "label"
PROFILE_FILE = "profile.json"
METADATA_FILE = "metadata.json"
# The files whose bytes define a version; metadata.json (which carries run lineage) is not one.
CONTENT_FILES = (*(f"{name}.parquet" for name in SPLIT_NAMES), PROFILE_FILE)
PARTITION_PREFIX = "as_of_date="
PARTITION_FILE = "data.parquet"


class TrainingSetError(ValueError):
    """A training set cannot be built from the data or settings given; the message says why."""


@dataclass(frozen=True)
class SplitSpec:
    """How many labelled as-of dates to use and how to cut them (see the module docstring)."""

    window_days: int = 28
    validation_days: int = 3
    test_days: int = 3
    gap_days: int = LABEL_HORIZON_DAYS

    def __post_init__(self) -> None:
        if self.gap_days < LABEL_HORIZON_DAYS:
            raise TrainingSetError(
                f"gap_days={self.gap_days} is shorter than the label horizon "
                f"({LABEL_HORIZON_DAYS} days): the labels of the last train days would be built "
                f"from days the validation split sees as features. Set gap_days >= "
                f"{LABEL_HORIZON_DAYS}."
            )
        if self.validation_days < 1 or self.test_days < 1:
            raise TrainingSetError(
                f"validation_days={self.validation_days} and test_days={self.test_days} must "
                "both be at least 1."
            )
        if self.window_days < self.minimum_window_days:
            raise TrainingSetError(
                f"window_days={self.window_days} leaves no train days: validation_days "
                f"({self.validation_days}) + test_days ({self.test_days}) + 2 gaps of "
                f"{self.gap_days} days need a window of at least {self.minimum_window_days} days."
            )

    @property
    def minimum_window_days(self) -> int:
        return self.validation_days + self.test_days + 2 * self.gap_days + 1


@dataclass(frozen=True)
class SplitDates:
    """The as-of dates of each split; dates inside the gaps belong to none."""

    window: tuple[date, ...]
    train: tuple[date, ...]
    validation: tuple[date, ...]
    test: tuple[date, ...]

    def of(self, split: str) -> tuple[date, ...]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[split]

    @property
    def used(self) -> tuple[date, ...]:
        return tuple(sorted((*self.train, *self.validation, *self.test)))


def assign_split_dates(labelled_dates: Sequence[date], spec: SplitSpec) -> SplitDates:
    """Cut the latest `spec.window_days` labelled dates into train / validation / test."""
    distinct = sorted(set(labelled_dates))
    if len(distinct) < spec.window_days:
        span = f" ({distinct[0]}..{distinct[-1]})" if distinct else ""
        raise TrainingSetError(
            f"Need {spec.window_days} labelled as-of dates for the training window, found "
            f"{len(distinct)}{span}. Materialize more gold/training_examples partitions or "
            "lower window_days."
        )
    window = tuple(distinct[-spec.window_days :])
    test = window[-spec.test_days :]
    before_test = [d for d in window if d < test[0] - timedelta(days=spec.gap_days)]
    validation = tuple(before_test[-spec.validation_days :])
    if not validation:
        raise TrainingSetError(_empty_split_message("validation", window, spec))
    train = tuple(d for d in window if d < validation[0] - timedelta(days=spec.gap_days))
    if not train:
        raise TrainingSetError(_empty_split_message("train", window, spec))
    return SplitDates(window=window, train=train, validation=validation, test=test)


def _empty_split_message(split: str, window: Sequence[date], spec: SplitSpec) -> str:
    return (
        f"The {split} split is empty: the window {window[0]}..{window[-1]} has "
        f"{len(window)} labelled as-of dates but they are too sparse for validation_days="
        f"{spec.validation_days}, test_days={spec.test_days} and gaps of {spec.gap_days} "
        "calendar days. Fill the missing gold/training_examples partitions or widen window_days."
    )


def list_as_of_partitions(gold_dir: Path) -> dict[date, Path]:
    """`as_of_date=<D>/data.parquet` files under `gold_dir`, by as-of date."""
    partitions: dict[date, Path] = {}
    if not gold_dir.exists():
        return partitions
    for folder in sorted(gold_dir.iterdir()):
        if not folder.is_dir() or not folder.name.startswith(PARTITION_PREFIX):
            continue
        path = folder / PARTITION_FILE
        if not path.exists():
            continue
        raw = folder.name.removeprefix(PARTITION_PREFIX)
        try:
            partitions[date.fromisoformat(raw)] = path
        except ValueError as exc:
            raise TrainingSetError(
                f"{folder}: folder name is not as_of_date=YYYY-MM-DD; rename or remove it."
            ) from exc
    return partitions


def labelled_as_of_dates(partitions: Mapping[date, Path]) -> list[date]:
    """As-of dates whose partition holds at least one non-null label (read: one column)."""
    labelled = []
    for as_of_date, path in sorted(partitions.items()):
        try:
            has_label = (
                pl.scan_parquet(path).select(pl.col(LABEL_COLUMN).is_not_null().any()).collect()
            )
        except pl.exceptions.ColumnNotFoundError as exc:
            raise TrainingSetError(
                f"{path}: no '{LABEL_COLUMN}' column; training_examples must end with the label."
            ) from exc
        if has_label.item():
            labelled.append(as_of_date)
    return labelled


def with_full_feature_window(
    as_of_dates: Sequence[date], first_arrival: date | None, warmup_days: int
) -> list[date]:
    """The as-of dates at least `warmup_days` after the first day of data.

    Before that, windowed features (30-day counts, spend, recency) cover less than their window
    and are biased low: a model trained on them, or a drift reference profiled on them, would
    learn the lake's start-up rather than the shop.
    """
    if first_arrival is None:
        return []
    first_complete = first_arrival + timedelta(days=warmup_days - 1)
    return [d for d in as_of_dates if d >= first_complete]


def read_training_examples(
    partitions: Mapping[date, Path], as_of_dates: Sequence[date]
) -> pl.DataFrame:
    """The labelled rows of the given as-of dates, checked and sorted by (as_of_date, user_id).

    Partitions may differ by added feature columns (schema evolution): missing ones are null.
    """
    frames = []
    for as_of_date in sorted(as_of_dates):
        path = partitions[as_of_date]
        frame = pl.read_parquet(path)
        _check_partition(frame, path, as_of_date)
        frames.append(frame.filter(pl.col(LABEL_COLUMN).is_not_null()))
    examples = pl.concat(frames, how="diagonal_relaxed")
    duplicated = examples.filter(pl.struct(KEY_COLUMNS).is_duplicated())
    if duplicated.height:
        first = duplicated.row(0, named=True)
        raise TrainingSetError(
            f"training_examples key (user_id, as_of_date) is not unique: {duplicated.height} rows "
            f"share a key, e.g. user_id={first['user_id']!r} in "
            f"{partitions[first['as_of_date']]}. Rebuild that gold partition."
        )
    features = [c for c in examples.columns if c not in (*KEY_COLUMNS, LABEL_COLUMN)]
    return examples.select(*KEY_COLUMNS, *features, LABEL_COLUMN).sort(["as_of_date", "user_id"])


def _check_partition(frame: pl.DataFrame, path: Path, as_of_date: date) -> None:
    missing = [c for c in (*KEY_COLUMNS, LABEL_COLUMN) if c not in frame.columns]
    if missing:
        raise TrainingSetError(f"{path}: missing column(s) {missing}; rebuild the gold partition.")
    if frame.schema["as_of_date"] != pl.Date:
        raise TrainingSetError(
            f"{path}: as_of_date is {frame.schema['as_of_date']}, expected Date."
        )
    wrong_date = frame.filter(pl.col("as_of_date") != as_of_date)
    if wrong_date.height:
        raise TrainingSetError(
            f"{path}: {wrong_date.height} rows have as_of_date {wrong_date['as_of_date'][0]} but "
            f"the folder says {as_of_date}; rebuild the gold partition."
        )
    if not frame.schema[LABEL_COLUMN].is_integer():
        raise TrainingSetError(
            f"{path}: label is {frame.schema[LABEL_COLUMN]}, expected an integer 0/1 column."
        )
    bad_labels = frame.filter(
        pl.col(LABEL_COLUMN).is_not_null() & ~pl.col(LABEL_COLUMN).is_in([0, 1])
    )
    if bad_labels.height:
        raise TrainingSetError(
            f"{path}: {bad_labels.height} labels are not 0/1 (e.g. "
            f"{bad_labels[LABEL_COLUMN][0]} for user_id={bad_labels['user_id'][0]!r})."
        )


def split_examples(examples: pl.DataFrame, split_dates: SplitDates) -> dict[str, pl.DataFrame]:
    """Rows of each split, in (as_of_date, user_id) order."""
    return {
        name: examples.filter(pl.col("as_of_date").is_in(split_dates.of(name))).sort(
            ["as_of_date", "user_id"]
        )
        for name in SPLIT_NAMES
    }


def feature_columns(frame: pl.DataFrame) -> list[dict[str, str]]:
    """Every column but the key and the label; String is categorical, the rest numeric."""
    return [
        {
            "name": name,
            "dtype": str(dtype),
            "kind": "categorical" if dtype == pl.String else "numeric",
        }
        for name, dtype in frame.schema.items()
        if name not in (*KEY_COLUMNS, LABEL_COLUMN)
    ]


def split_summary(frame: pl.DataFrame) -> dict[str, Any]:
    rows = frame.height
    positives = int(frame[LABEL_COLUMN].sum()) if rows else 0
    dates = frame["as_of_date"].unique().sort()
    return {
        "rows": rows,
        "positives": positives,
        "label_rate": round(positives / rows, 6) if rows else None,
        "users": frame["user_id"].n_unique(),
        "as_of_dates": dates.len(),
        "first_as_of_date": dates.min().isoformat() if rows else None,
        "last_as_of_date": dates.max().isoformat() if rows else None,
    }


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_md5(file_md5s: Mapping[str, str]) -> str:
    """The identity of a version: one md5 over the (name, md5) pairs of its content files."""
    lines = "".join(f"{name} {file_md5s[name]}\n" for name in sorted(file_md5s))
    return hashlib.md5(lines.encode()).hexdigest()


def dumps_json(payload: Mapping[str, Any]) -> str:
    """Canonical JSON: sorted keys, fixed indentation, trailing newline (byte-stable)."""
    return json.dumps(payload, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def build_metadata(
    *,
    spec: SplitSpec,
    split_dates: SplitDates,
    splits: Mapping[str, pl.DataFrame],
    file_md5s: Mapping[str, str],
    upstream: Mapping[str, Any],
) -> dict[str, Any]:
    """What a consumer needs to trust and reuse a training set; no wall-clock time in it."""
    return {
        "dataset": "training_set",
        "format_version": 1,
        "key": list(KEY_COLUMNS),
        "label": {"column": LABEL_COLUMN, "horizon_days": LABEL_HORIZON_DAYS},
        "window": {
            "first_as_of_date": split_dates.window[0].isoformat(),
            "last_as_of_date": split_dates.window[-1].isoformat(),
            "labelled_as_of_dates": len(split_dates.window),
            "window_days": spec.window_days,
            "validation_days": spec.validation_days,
            "test_days": spec.test_days,
            "gap_days": spec.gap_days,
        },
        "splits": {
            name: {"file": f"{name}.parquet", **split_summary(splits[name])} for name in SPLIT_NAMES
        },
        "features": feature_columns(splits["train"]),
        "files": dict(sorted(file_md5s.items())),
        "content_md5": content_md5(file_md5s),
        "upstream": dict(upstream),
    }


@dataclass(frozen=True)
class WrittenTrainingSet:
    directory: Path
    metadata: dict[str, Any]
    file_md5s: dict[str, str]  # every file in the directory, metadata.json included


def write_training_set(
    out_dir: Path,
    *,
    spec: SplitSpec,
    split_dates: SplitDates,
    splits: Mapping[str, pl.DataFrame],
    profile: Mapping[str, Any],
    upstream: Mapping[str, Any],
) -> WrittenTrainingSet:
    """Write splits + profile.json + metadata.json to `out_dir`, replacing it atomically.

    Same frames and lineage in, same bytes out: rows are already sorted, the Parquet writer
    settings are fixed (zstd, statistics, fixed row groups) and JSON is canonical.
    """
    staging = out_dir.with_name(f".{out_dir.name}.staging.{uuid.uuid4().hex}")
    staging.mkdir(parents=True)
    try:
        for name in SPLIT_NAMES:
            write_parquet_atomic(splits[name], staging / f"{name}.parquet")
        (staging / PROFILE_FILE).write_text(dumps_json(profile))
        content = {name: file_md5(staging / name) for name in CONTENT_FILES}
        metadata = build_metadata(
            spec=spec,
            split_dates=split_dates,
            splits=splits,
            file_md5s=content,
            upstream=upstream,
        )
        (staging / METADATA_FILE).write_text(dumps_json(metadata))
        all_md5s = {**content, METADATA_FILE: file_md5(staging / METADATA_FILE)}
        replace_dir_atomic(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return WrittenTrainingSet(directory=out_dir, metadata=metadata, file_md5s=all_md5s)


def upstream_partition_for(
    as_of_date: date, lateness_days: int = DEFAULT_LABEL_LATENESS_DAYS
) -> str:
    """The gold partition (knowledge date) whose run writes training_examples of `as_of_date`.

    A label of D is complete once D + horizon + allowed lateness has arrived (DESIGN.md).
    """
    return (as_of_date + timedelta(days=LABEL_HORIZON_DAYS + lateness_days)).isoformat()
