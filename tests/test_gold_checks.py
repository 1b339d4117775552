"""The gold contract check reads what its run wrote, so a day costs the same at any history."""

from datetime import date, timedelta

import polars as pl

from refinery.assets.gold.checks import files_to_check, knowledge_dates_of_run
from refinery.assets.gold.export import mart_file
from refinery.contracts.gold import gold_contract


def write_days(gold, model, first: date, days: int):
    for i in range(days):
        path = mart_file(gold, model, first + timedelta(days=i))
        path.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"user_id": ["u"], "as_of_date": [first + timedelta(days=i)]}).write_parquet(
            path
        )


def test_run_tags_give_the_knowledge_dates():
    assert knowledge_dates_of_run({"dagster/partition": "2026-03-05"}) == (date(2026, 3, 5),) * 2
    assert knowledge_dates_of_run(
        {
            "dagster/asset_partition_range_start": "2026-03-01",
            "dagster/asset_partition_range_end": "2026-03-03",
        }
    ) == (date(2026, 3, 1), date(2026, 3, 3))
    assert knowledge_dates_of_run({}) is None


def test_only_the_runs_partitions_are_read_and_labels_lag_ten_days(tmp_path):
    gold = tmp_path / "lake" / "gold"
    write_days(gold, "user_daily_features", date(2026, 1, 1), 90)
    write_days(gold, "training_examples", date(2026, 1, 1), 80)
    run = (date(2026, 3, 20), date(2026, 3, 20))
    (features,) = files_to_check(gold / "user_daily_features", "user_daily_features", run)
    assert "as_of_date=2026-03-20" in str(features)
    (examples,) = files_to_check(gold / "training_examples", "training_examples", run)
    assert "as_of_date=2026-03-10" in str(examples)
    assert len(files_to_check(gold / "user_daily_features", "user_daily_features", None)) == 90


def declared_frame(model: str, rows: int) -> pl.DataFrame:
    """A frame with every declared column of `model`, zeros and empty strings."""
    from refinery.contracts.gold import declared_columns

    def value(dtype):
        if dtype == pl.Date:
            return date(2026, 1, 1)
        return "x" if dtype == pl.String else 0

    return pl.DataFrame(
        {c.name: [value(c.dtype)] * rows for c in declared_columns(model)},
        schema={c.name: c.dtype for c in declared_columns(model)},
    )


def test_gold_contract_rules():
    frame = declared_frame("training_examples", 3).with_columns(
        user_id=pl.Series(["a", "b", "c"]),
        events_7d=pl.Series([1, -1, 0]),
        share_mobile_30d=pl.Series([0.5, 1.5, None]),
        cart_to_purchase_rate_30d=pl.Series([1.5, 0.0, None]),
        label=pl.Series([0, 2, 1], dtype=pl.Int32),
    )
    contract = gold_contract("training_examples")
    reasons = frame.select(contract.first_violation().alias("r"))["r"].to_list()
    assert reasons == [None, "events_7d_out_of_range", None]
    assert contract.unique == ("user_id", "as_of_date")
    assert "label_not_binary" in contract.constraints
    assert not frame.select(contract.all_ok()).to_series()[1]
