"""The gold marts' columns are declared once (dbt_project/models/marts/_marts.yml) and enforced
twice: by dbt when it builds a mart (model contracts) and by the Pandera contract on the exported
Parquet, which is built from the declaration, not from the frame. A feature dropped, renamed or
retyped must fail both."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import date

import pandera.errors
import polars as pl
import pytest

from refinery.assets.gold.dbt_project import DBT_PROJECT_DIR
from refinery.contracts.gold import declared_columns, gold_contract
from tests.gold_fixtures import write_silver
from tests.test_gold_checks import declared_frame

MUTATIONS = {
    "dropped": lambda f: f.drop("sessions_7d"),
    "renamed": lambda f: f.rename({"spend_7d": "spend_week"}),
    "retyped": lambda f: f.with_columns(pl.col("events_30d").cast(pl.Float64)),
}


def test_every_mart_column_declares_a_type_and_a_written_description():
    for model in ("user_daily_features", "labels", "training_examples"):
        for column in declared_columns(model):
            assert column.description and "doc(" not in column.description, column.name
    # features are described once and shared
    features = {c.name: c.description for c in declared_columns("user_daily_features")}
    examples = {c.name: c.description for c in declared_columns("training_examples")}
    shared = set(features) - {"user_id", "as_of_date"}
    assert shared and all(examples[name] == features[name] for name in shared)


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_pandera_refuses_a_mart_that_breaks_its_declaration(mutation):
    schema = gold_contract("user_daily_features").pandera_schema()
    frame = declared_frame("user_daily_features", 2).with_columns(user_id=pl.Series(["a", "b"]))
    schema.validate(frame)  # the declared shape passes
    with pytest.raises((pandera.errors.SchemaError, pandera.errors.SchemaErrors)):
        schema.validate(MUTATIONS[mutation](frame), lazy=True)


@pytest.mark.slow
def test_dbt_refuses_to_build_a_mart_that_breaks_its_declaration(tmp_path):
    project = tmp_path / "dbt_project"
    shutil.copytree(
        DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    model = project / "models" / "marts" / "user_daily_features.sql"
    sql = model.read_text()
    for old, new in (
        ("cast(sessions_7d as bigint) as sessions_7d,", ""),  # dropped
        ("cast(spend_7d as double) as spend_7d,", "cast(spend_7d as double) as spend_week,"),
        (
            "cast(items_purchased_30d as bigint) as items_purchased_30d,",
            "cast(items_purchased_30d as double) as items_purchased_30d,",
        ),
    ):
        assert old in sql
        sql = sql.replace(old, new)
    model.write_text(sql)
    root = tmp_path / "data"
    write_silver(root, until=date(2025, 1, 3))
    env = {**os.environ, "REFINERY_DATA_DIR": str(root)}
    result = subprocess.run(
        ["dbt", "build", "--project-dir", str(project), "--profiles-dir", str(project),
         "--select", "+user_daily_features",
         "--vars", "{min_date: '2025-01-03', max_date: '2025-01-03'}"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "contract" in output.lower()
    for column in ("sessions_7d", "spend_week", "items_purchased_30d"):
        assert column in output, output[-3000:]


@pytest.mark.slow
def test_adding_a_feature_column_and_backfilling_it(tmp_path):
    """docs/GOLD.md "Adding a feature": declare the column, then one full refresh rebuilds every
    as-of date with it; an incremental run refuses the changed schema instead of mixing rows."""
    import duckdb

    project = tmp_path / "dbt_project"
    shutil.copytree(
        DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    root = tmp_path / "data"
    write_silver(root, until=date(2025, 1, 16))
    env = {**os.environ, "REFINERY_DATA_DIR": str(root)}

    def dbt(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["dbt", "build", "--project-dir", str(project), "--profiles-dir", str(project),
             "--target-path", str(tmp_path / "target"), *args],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    def features() -> pl.DataFrame:
        with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
            frame = pl.from_arrow(con.sql("select * from user_daily_features").to_arrow_table())
        return frame.sort("as_of_date", "user_id")

    assert dbt("--vars", "{min_date: '2025-01-01', max_date: '2025-01-16'}").returncode == 0
    before = features()

    sql = project / "models" / "marts" / "user_daily_features.sql"
    sql.write_text(
        sql.read_text().replace(
            "        cast(user_versions.country as varchar) as country\n",
            "        cast(user_versions.country as varchar) as country,\n"
            "        cast(views_30d / events_30d as double) as view_share_30d\n",
        )
    )
    for model in ("user_daily_features", "training_examples"):
        declaration = project / "models" / "marts" / "_marts.yml"
        text = declaration.read_text()
        anchor = f"  - name: {model}\n"
        start = text.index(anchor)
        country = text.index("      - name: country\n", start)
        end = text.index("\n", text.index("data_type", country)) + 1
        text = (
            text[:end]
            + (
                "      - name: view_share_30d\n"
                '        description: "Share of the 30-day events that are views."\n'
                "        data_type: double\n"
            )
            + text[end:]
        )
        declaration.write_text(text)

    one_day = "{min_date: '2025-01-16', max_date: '2025-01-16'}"
    refused = dbt("--vars", one_day)
    assert refused.returncode != 0  # the table has no such column: nothing is half-written
    assert features().columns == before.columns
    rebuilt = dbt("--full-refresh", "--vars", one_day)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    after = features()
    assert after["as_of_date"].n_unique() == before["as_of_date"].n_unique() == 16
    assert after.select(before.columns).equals(before)  # the history is the same, plus the column
    expected = (before["views_30d"] / before["events_30d"]).alias("view_share_30d")
    assert after["view_share_30d"].equals(expected.cast(pl.Float64))
