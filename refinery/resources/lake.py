"""Where everything lives under the data root, and how it is written safely."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from refinery import settings

DEFAULT_DATA_DIR = "./data"
SOURCES = ("events", "users", "products")


def data_dir_from_env() -> Path:
    """The data root of the settings (REFINERY_DATA_DIR, default ./data), read now."""
    return settings.DATA_DIR.get()


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

    @property
    def staging(self) -> Path:
        """Where runs build partitions before swapping them in: inside the lake (one filesystem,
        so the swap is a rename) but outside every table folder, so no glob over the lake sees a
        partition that is half written or was left by a killed run."""
        return self.lake / ".staging"

    def staging_dir(self, layer: str, table: str, date: str) -> Path:
        """A fresh staging folder, named for its partition and the process that owns it."""
        return self.staging / f"{layer}.{table}.{date}.{os.getpid()}.{uuid.uuid4().hex}"

    def sweep_staging(self) -> list[Path]:
        """Delete staging folders whose process is gone (a killed run's leftovers)."""
        removed = []
        if not self.staging.is_dir():
            return removed
        for path in self.staging.iterdir():
            try:
                pid = int(path.name.split(".")[-2])
            except (IndexError, ValueError):
                pid = -1  # not a name refinery gives: nobody owns it
            if pid == os.getpid() or (pid > 0 and _process_alive(pid)):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        return removed

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


def part_signature(parts: list[Path]) -> list[list]:
    """What a partition's Parquet parts look like on disk: [name, size, mtime_ns, inode] each.
    A rewrite (staging + exchange, a repair) changes it. Derived state built from a partition
    (silver's event-id index, gold's per-arrival aggregates) records it to know when it is stale."""
    signature = []
    for part in parts:
        stat = part.stat()
        signature.append([part.name, stat.st_size, stat.st_mtime_ns, stat.st_ino])
    return signature


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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # not glibc >= 2.28
    _renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_dir_atomic(staging: Path, target: Path) -> None:
    """Swap a fully written staging directory into place (rerun of a partition replaces it).

    With an existing partition the two directories are exchanged in one atomic step, so a reader
    (or a kill) sees the old partition or the new one, never none; the old one, now at the
    staging path outside the table folders, is deleted after. Where the kernel cannot exchange,
    the old partition is first moved into the staging area (never beside the partitions).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if _exchange(staging, target):
            shutil.rmtree(staging, ignore_errors=True)
            return
        old = staging.with_name(f"{staging.name}-old")  # keeps the owner's pid in the name
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(staging, target)
