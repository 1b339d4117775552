"""The training set's asset checks, as pure functions over the split frames that were written.

`splits.py` cuts the splits so that none of these can fail; the checks read back the Parquet
files that are about to be published and verify it, independently of how they were cut:

- `splits_disjoint` (ERROR, blocking): no (user_id, as_of_date) row and no as-of date is in
  two splits.
- `split_gaps` (ERROR, blocking): between train and validation, and between validation and
  test, more than `gap_days` calendar days pass (`v > t + gap_days`): the label window of the
  last earlier row ends before the first later as-of date. Every split holds rows.
- `split_label_rates` (WARN; ERROR when a split holds one class only, where AUC and log-loss
  are undefined): each split's positive rate, and validation's and test's within a factor
  `max_ratio` (default 2) of train's.

A failed blocking check stops the publish: the run fails after recording the results, nothing
reaches the registry, and the written files stay in `lake/ml/training_dataset/` to look at.
`split_label_rates` does not block: its ERROR or WARN is recorded and the version published.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from refinery.assets.ml.splits import KEY_COLUMNS, LABEL_COLUMN, SPLIT_NAMES

DISJOINT = "splits_disjoint"
GAPS = "split_gaps"
LABEL_RATES = "split_label_rates"
DEFAULT_MAX_LABEL_RATE_RATIO = 2.0


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result, independent of Dagster (the asset turns it into AssetCheckResult)."""

    name: str
    passed: bool
    severity: str  # "ERROR" or "WARN": what a failure means
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    blocking: bool = False


def _dates(frame: pl.DataFrame) -> pl.Series:
    return frame["as_of_date"].unique().sort()


def check_disjoint(splits: Mapping[str, pl.DataFrame]) -> CheckOutcome:
    keyed = pl.concat(
        [
            frame.select(*KEY_COLUMNS).with_columns(split=pl.lit(name))
            for name, frame in splits.items()
        ]
    )
    rows = (
        keyed.group_by(KEY_COLUMNS)
        .agg(pl.col("split").unique().sort())
        .filter(pl.col("split").list.len() > 1)
    )
    dates = (
        keyed.group_by("as_of_date")
        .agg(pl.col("split").unique().sort())
        .filter(pl.col("split").list.len() > 1)
        .sort("as_of_date")
    )
    passed = rows.height == 0 and dates.height == 0
    if passed:
        text = "no row and no as-of date is in two splits"
    else:
        text = f"{rows.height} rows and {dates.height} as-of dates are in more than one split"
        if dates.height:
            first = dates.row(0, named=True)
            text += f" (e.g. {first['as_of_date']} in {', '.join(first['split'])})"
        elif rows.height:
            first = rows.row(0, named=True)
            text += (
                f" (e.g. user_id {first['user_id']} on {first['as_of_date']} in "
                f"{', '.join(first['split'])})"
            )
    return CheckOutcome(
        DISJOINT,
        passed,
        "ERROR",
        text,
        {"overlapping_rows": rows.height, "overlapping_as_of_dates": dates.height},
        blocking=True,
    )


def check_gaps(splits: Mapping[str, pl.DataFrame], gap_days: int) -> CheckOutcome:
    empty = [name for name in SPLIT_NAMES if splits[name].height == 0]
    if empty:
        return CheckOutcome(
            GAPS,
            False,
            "ERROR",
            f"empty split(s): {', '.join(empty)}",
            {"empty_splits": empty},
            blocking=True,
        )
    metadata: dict[str, Any] = {"required_gap_days": gap_days}
    problems = []
    for earlier, later in itertools.pairwise(SPLIT_NAMES):
        last, first = _dates(splits[earlier]).max(), _dates(splits[later]).min()
        gap = (first - last).days - 1  # calendar days strictly between the two splits
        metadata[f"gap_{earlier}_{later}_days"] = gap
        if gap < gap_days:
            problems.append(
                f"{earlier} ends {last}, {later} starts {first}: {gap} days between, "
                f"{gap_days} required"
            )
    passed = not problems
    text = (
        f"at least {gap_days} calendar days between train, validation and test"
        if passed
        else "; ".join(problems)
    )
    return CheckOutcome(GAPS, passed, "ERROR", text, metadata, blocking=True)


def label_rate(frame: pl.DataFrame) -> float | None:
    return float(frame[LABEL_COLUMN].mean()) if frame.height else None


def check_label_rates(
    splits: Mapping[str, pl.DataFrame], max_ratio: float = DEFAULT_MAX_LABEL_RATE_RATIO
) -> CheckOutcome:
    rates = {name: label_rate(splits[name]) for name in SPLIT_NAMES}
    metadata: dict[str, Any] = {
        f"{name}_label_rate": round(rate, 4) if rate is not None else None
        for name, rate in rates.items()
    }
    metadata["max_ratio"] = max_ratio
    one_class = [name for name, rate in rates.items() if rate is None or rate in (0.0, 1.0)]
    if one_class:
        described = ", ".join(
            f"{name} ({'no rows' if rates[name] is None else f'label rate {rates[name]:.0%}'})"
            for name in one_class
        )
        return CheckOutcome(
            LABEL_RATES,
            False,
            "ERROR",
            f"one class only in {described}: a model cannot be evaluated on it",
            metadata,
        )
    train = rates["train"]
    off = [
        f"{name} {rates[name]:.4f} vs train {train:.4f}"
        for name in SPLIT_NAMES[1:]
        if not train / max_ratio <= rates[name] <= train * max_ratio
    ]
    if off:
        return CheckOutcome(
            LABEL_RATES,
            False,
            "WARN",
            f"label rate more than {max_ratio:g}x away from train's: {'; '.join(off)}",
            metadata,
        )
    return CheckOutcome(
        LABEL_RATES,
        True,
        "WARN",
        f"both classes in every split; validation and test within {max_ratio:g}x of train's "
        f"label rate ({train:.4f})",
        metadata,
    )


def evaluate_split_checks(
    splits: Mapping[str, pl.DataFrame],
    gap_days: int,
    max_ratio: float = DEFAULT_MAX_LABEL_RATE_RATIO,
) -> list[CheckOutcome]:
    return [
        check_disjoint(splits),
        check_gaps(splits, gap_days),
        check_label_rates(splits, max_ratio),
    ]


def read_written_splits(directory) -> dict[str, pl.DataFrame]:
    """The key and label columns of the split files as written (what will be published)."""
    return {
        name: pl.read_parquet(directory / f"{name}.parquet", columns=[*KEY_COLUMNS, LABEL_COLUMN])
        for name in SPLIT_NAMES
    }
