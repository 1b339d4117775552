"""Where everything lives under the data root, and how it is written safely."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl

DEFAULT_DATA_DIR = "./data"
SOURCES = ("events", "users", "products")


def data_dir_from_env() -> Path:
    return Path(os.environ.get("REFINERY_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


@dataclass(frozen=True)
class LakePaths:
    """The layout of DESIGN.md, computed from one data root."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def dvc_remote(self) -> Path:
        return self.root / "dvc-remote"

    def landing_dir(self, source: str, arrival_date: str) -> Path:
        return self.landing / source / arrival_date

    def partition_dir(self, layer: str, table: str, date: str) -> Path:
        return self.lake / layer / table / f"date={date}"

    def partition_file(self, layer: str, table: str, date: str) -> Path:
        return self.partition_dir(layer, table, date) / "part-0.parquet"

    def partition_parts(self, layer: str, table: str, date: str) -> list[Path]:
        """The Parquet parts of a partition in write order: part-0, part-1, …, part-10 (a glob
        sorts part-10 before part-2; arrival order decides which duplicate is kept)."""
        parts = self.partition_dir(layer, table, date).glob("part-*.parquet")
        return sorted(parts, key=lambda p: int(p.stem.removeprefix("part-")))

    def gold_dir(self, model: str) -> Path:
        return self.lake / "gold" / model

    def existing_partitions(self, layer: str, table: str) -> list[str]:
        base = self.lake / layer / table
        if not base.exists():
            return []
        return sorted(
            p.name.removeprefix("date=")
            for p in base.iterdir()
            if p.is_dir() and p.name.startswith("date=") and (p / "part-0.parquet").exists()
        )


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file.

    Fixed writer settings (zstd, statistics, one row group per 512k rows) keep output
    bytes a function of the frame alone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True, row_group_size=512_000)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_dir_atomic(staging: Path, target: Path) -> None:
    """Swap a fully written staging directory into place (rerun of a partition replaces it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old.{uuid.uuid4().hex}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    """An integer setting an operator may override in the environment (sensor-triggered runs
    take their config defaults from here); below `minimum` it is refused, naming the setting."""
    raw = os.environ.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={raw!r} must be >= {minimum}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]
