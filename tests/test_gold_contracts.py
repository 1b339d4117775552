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

from refinery.assets.gold.assets import DBT_PROJECT_DIR
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
    frame = declared_frame("user_daily_features", 2).with_columns(
        user_id=pl.Series(["a", "b"])
    )
    schema.validate(frame)  # the declared shape passes
    with pytest.raises((pandera.errors.SchemaError, pandera.errors.SchemaErrors)):
        schema.validate(MUTATIONS[mutation](frame), lazy=True)


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
        ("cast(items_purchased_30d as bigint) as items_purchased_30d,",
         "cast(items_purchased_30d as double) as items_purchased_30d,"),
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
