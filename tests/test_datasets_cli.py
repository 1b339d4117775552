"""ml/training_dataset through Dagster, then the versions it published through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance, materialize

from refinery.assets.ml.splits import file_md5
from refinery.assets.ml.training_dataset import training_dataset
from refinery.datasets import latest_version, list_versions, main, read_metadata
from refinery.resources import LakeResource
from refinery.resources.lake import LakePaths, write_parquet_atomic
from refinery.resources.registry import DvcRegistry

START = date(2025, 5, 1)
GOLD = AssetKey(["gold", "training_examples"])


def write_gold_day(root: Path, as_of_date: date, seed: int, users: int = 10) -> None:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "user_id": [f"user-{u:03d}" for u in range(users)],
            "as_of_date": [as_of_date] * users,
            "views_7d": rng.integers(0, 30, users),
            "spend_30d": rng.gamma(2.0, 25.0, users),
            "favourite_category_30d": rng.choice(["books", "toys", None], users).tolist(),
            "label": rng.integers(0, 2, users).astype(np.int8),
        },
        schema_overrides={"views_7d": pl.Int64, "label": pl.Int8},
    )
    path = root / "lake/gold/training_examples" / f"as_of_date={as_of_date}" / "data.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


def materialization_metadata(result) -> dict:
    [event] = result.asset_materializations_for_node("ml__training_dataset")
    metadata = {key: value.value for key, value in event.metadata.items()}
    # the split figures and file md5s are tables: one row per split, one per file
    metadata["splits"] = {r.data["split"]: r.data for r in metadata["splits"].records}
    metadata["files"] = {r.data["file"]: r.data["md5"] for r in metadata["files"].records}
    return metadata


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory):
    """Two materializations with data changing in between: v1 and v2, plus a no-op rebuild."""
    root = tmp_path_factory.mktemp("data")
    patch = pytest.MonkeyPatch()
    patch.setenv("REFINERY_DATA_DIR", str(root))
    for offset in range(28):
        write_gold_day(root, START + timedelta(days=offset), seed=offset)
    # the lake's history began 30 days before START: every as-of date has full feature windows
    history_start = LakePaths(root).partition_file(
        "silver", "events", str(START - timedelta(days=29))
    )
    write_parquet_atomic(pl.DataFrame({"event_id": ["e0"]}), history_start)
    instance = DagsterInstance.ephemeral()
    # gold materialized partition 2025-05-11 (knowledge date) = as-of date 2025-05-01
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=GOLD, partition="2025-05-11")
    )
    resources = {"lake": LakeResource(data_dir=str(root)), "dvc_registry": DvcRegistry()}
    runs = [materialize([training_dataset], instance=instance, resources=resources)]
    runs.append(materialize([training_dataset], instance=instance, resources=resources))
    write_gold_day(root, START + timedelta(days=28), seed=99)  # a new labelled day arrives
    runs.append(materialize([training_dataset], instance=instance, resources=resources))
    yield root, instance, [materialization_metadata(run) for run in runs]
    patch.undo()


def test_asset_publishes_a_version_with_fetch_instructions(published) -> None:
    root, _, (first, _, _) = published
    assert first["version_tag"] == "training_set@v1.0.0" and first["new_version"] is True
    assert (
        first["fetch_command"]
        == f"uv run refinery-datasets --registry {root / 'registry'} get training_set@v1 ./training_set-v1"
    )
    assert first["dvc_get_command"].endswith("datasets/training_set --rev training_set@v1.0.0")
    registry = root / "registry"
    assert (
        first["git_commit"]
        == subprocess.run(
            ["git", "rev-list", "-n1", "training_set@v1.0.0"],
            cwd=registry,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # defaults: 28 labelled days -> train 8, validation 3, test 3 days of 10 users
    splits = first["splits"]
    assert [splits[name]["rows"] for name in ("train", "validation", "test")] == [80, 30, 30]
    assert splits["train"]["last_as_of_date"] == "2025-05-08"
    assert splits["validation"]["first_as_of_date"] == "2025-05-16"
    assert splits["test"]["first_as_of_date"] == "2025-05-26"


def test_published_files_are_the_ones_written_to_the_lake(published) -> None:
    root, _, (_, _, third) = published  # the lake folder holds the last build (v2)
    lake_dir = root / "lake/ml/training_dataset"
    assert {p.name: file_md5(p) for p in lake_dir.iterdir()} == third["files"]
    train = pl.read_parquet(lake_dir / "train.parquet")
    assert third["splits"]["train"]["label_rate"] == round(train["label"].mean(), 4)
    assert train.equals(train.sort(["as_of_date", "user_id"]))


def test_metadata_records_upstream_materializations(published) -> None:
    root, instance, _ = published
    metadata = read_metadata("v1", root / "registry")
    partitions = {p["partition"]: p for p in metadata["upstream"]["partitions"]}
    [record] = instance.fetch_materializations(GOLD, limit=1).records
    assert partitions["2025-05-11"]["as_of_date"] == "2025-05-01"
    assert partitions["2025-05-11"]["materialization"]["storage_id"] == record.storage_id
    assert partitions["2025-05-12"]["materialization"] is None
    assert len(partitions) == 14  # only the dates that landed in a split
    assert {f["name"]: f["kind"] for f in metadata["features"]} == {
        "views_7d": "numeric",
        "spend_30d": "numeric",
        "favourite_category_30d": "categorical",
    }


def test_rebuild_from_unchanged_data_is_not_a_new_version(published) -> None:
    _, _, (first, second, third) = published
    assert second["new_version"] is False
    assert second["version_tag"] == first["version_tag"]
    assert second["git_commit"] == first["git_commit"]
    assert third["new_version"] is True and third["version_tag"] == "training_set@v2.0.0"
    assert third["splits"]["test"]["last_as_of_date"] == "2025-05-29"


def test_cli_lists_shows_and_gets_versions(published, tmp_path: Path, capsys) -> None:
    root, _, (first, _, third) = published
    registry = str(root / "registry")
    assert main(["--registry", registry, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["tag"] for v in listed] == ["training_set@v1.0.0", "training_set@v2.0.0"]
    assert listed[0]["rows"] == {"train": 80, "validation": 30, "test": 30}
    assert [v.commit for v in list_versions(registry)] == [first["git_commit"], third["git_commit"]]
    assert latest_version(registry) == "training_set@v2.0.0"

    assert main(["--registry", registry, "show", "v1"]) == 0
    assert json.loads(capsys.readouterr().out)["content_md5"] == first["content_md5"]

    # the real console script, as a user would call it (REFINERY_DATA_DIR finds the registry)
    out = tmp_path / "v1"
    fetched = subprocess.run(
        [
            str(Path(sys.executable).with_name("refinery-datasets")),
            "get",
            "training_set@v1",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"REFINERY_DATA_DIR": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert fetched.returncode == 0, fetched.stderr
    assert {p.name: file_md5(p) for p in out.iterdir()} == first["files"]

    assert main(["--registry", registry, "get", "v7", str(tmp_path / "v7")]) == 1
    assert "v7 does not exist" in capsys.readouterr().err


def test_gap_shorter_than_the_label_horizon_is_refused(published) -> None:
    root, instance, _ = published
    with pytest.raises(Exception, match="shorter than the label horizon"):
        materialize(
            [training_dataset],
            instance=instance,
            resources={"lake": LakeResource(data_dir=str(root)), "dvc_registry": DvcRegistry()},
            run_config={"ops": {"ml__training_dataset": {"config": {"gap_days": 3}}}},
        )
    assert [v.version for v in list_versions(root / "registry")] == [1, 2]
