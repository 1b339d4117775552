"""Published training-set versions, from Python and from the command line.

    uv run refinery-datasets list
    uv run refinery-datasets show v3
    uv run refinery-datasets get v3 ./training_set-v3

Listing versions and reading a profile only read git (the catalog copies of metadata.json and
profile.json at the version's tag), so they are cheap and work on a bare `git clone` of the
registry. Data comes through `dvc get`, which reads the registry's cache and falls back to its
DVC remote, so a fresh clone works with or without `dvc pull`. Every fetched file is checked
against the md5 recorded when the version was published.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from refinery.assets.ml.splits import SPLIT_NAMES, file_md5
from refinery.resources.lake import LakePaths, data_dir_from_env
from refinery.resources.registry import (
    ARTIFACT_NAME,
    DATA_PATH,
    DvcRegistry,
    RegistryError,
    git,
    latest_tag,
    parse_version,
    read_card,
    tag_for_version,
    version_tags,
)


@dataclass(frozen=True)
class VersionInfo:
    tag: str  # the git tag, e.g. training_set@v3.0.0
    version: int
    commit: str
    date: str  # ISO-8601 time of the tag
    rows: dict[str, int]  # rows per split
    label_rate: dict[str, float | None]
    content_md5: str

    @property
    def name(self) -> str:
        return f"v{self.version}"


RegistryLike = str | Path | DvcRegistry | None


def default_registry() -> Path:
    """Where the command line (and a bare `load_split("v2", "train")`) looks: the registry of
    $REFINERY_DATA_DIR (default ./data). Assets pass their own, from the lake resource."""
    return LakePaths(data_dir_from_env()).registry


def registry_path(registry: RegistryLike) -> Path:
    """A registry given as a path, a (rooted) DvcRegistry, or None for the default."""
    if isinstance(registry, DvcRegistry):
        return registry.path
    return Path(registry).resolve() if registry else default_registry()


def _registry(registry: RegistryLike) -> Path:
    path = registry_path(registry)
    if not (path / ".git").exists():
        raise RegistryError(
            f"No data registry at {path}: materialize ml/training_dataset first, or point "
            "registry= / --registry / REFINERY_DATA_DIR at an existing registry or a clone of one."
        )
    return path


def _tag(repo: Path, version: str | int) -> str:
    number = parse_version(version)
    tags = version_tags(repo)
    if number not in tags:
        known = ", ".join(f"v{n}" for n in tags) or "none"
        raise RegistryError(
            f"{ARTIFACT_NAME} v{number} does not exist in registry {repo} (versions: {known}). "
            "Run `uv run refinery-datasets list`."
        )
    return tags[number]


def list_versions(registry: RegistryLike = None) -> list[VersionInfo]:
    """Every published version, oldest first."""
    repo = _registry(registry)
    refs = git(
        repo,
        "for-each-ref",
        "--format=%(refname:short) %(*objectname) %(objectname) %(creatordate:iso-strict)",
        f"refs/tags/{ARTIFACT_NAME}@v*",
        what="listing versions",
    )
    described = {}
    for line in refs.splitlines():
        tag, peeled, target, date = line.split(" ")
        described[tag] = (peeled or target, date)
    versions = []
    for number, tag in version_tags(repo).items():
        commit, date = described[tag]
        metadata = read_card(repo, tag) or {}
        splits = metadata.get("splits", {})
        versions.append(
            VersionInfo(
                tag=tag,
                version=number,
                commit=commit,
                date=date,
                rows={name: splits.get(name, {}).get("rows", 0) for name in SPLIT_NAMES},
                label_rate={name: splits.get(name, {}).get("label_rate") for name in SPLIT_NAMES},
                content_md5=metadata.get("content_md5", ""),
            )
        )
    return versions


def latest_version(registry: RegistryLike = None) -> str | None:
    """The tag of the newest version (e.g. `training_set@v3.0.0`), None if nothing is published."""
    return latest_tag(registry_path(registry))


def read_metadata(version: str | int | None = None, registry: RegistryLike = None) -> dict:
    """metadata.json of a version (default: the latest), from git: no data is fetched."""
    repo = _registry(registry)
    tag = _tag(repo, version) if version is not None else latest_version(repo)
    if tag is None:
        raise RegistryError(f"Registry {repo} has no {ARTIFACT_NAME} version yet.")
    metadata = read_card(repo, tag)
    if metadata is None:
        raise RegistryError(f"{tag} in {repo} has no catalog metadata.json: not a refinery tag.")
    return metadata


def read_profile(
    version: str | int | None = None, registry: RegistryLike = None
) -> dict[str, Any] | None:
    """The reference profile of a version's train split (default: the latest); None if none.

    Read from the git-tracked catalog copy, so a drift check never fetches the dataset.
    """
    path = registry_path(registry)
    if version is None:
        tag = latest_version(path)
        if tag is None:
            return None
    else:
        tag = _tag(_registry(path), version)
    return read_card(path, tag, "profile.json")


def checkout(version: str | int, dest_dir: str | Path, registry: RegistryLike = None) -> Path:
    """Fetch a version's files into `dest_dir` (created if needed; same-named files replaced).

    Every file is verified against the md5 recorded at publication before it is moved in.
    """
    repo = _registry(registry)
    tag = _tag(repo, version)
    expected = _expected_md5s(repo, tag)
    dest = Path(dest_dir).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".fetch-{uuid.uuid4().hex}"
    try:
        with _dvc_filesystem(repo, tag) as fs:
            fs.get(DATA_PATH, str(staging), recursive=True)
        _verify(staging, expected, tag)
        for fetched in sorted(staging.iterdir()):
            fetched.replace(dest / fetched.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def load_split(version: str | int, split: str, registry: RegistryLike = None) -> pl.DataFrame:
    """One split (train / validation / test) of a version as a Polars frame, md5-verified."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_NAMES)}, not {split!r}.")
    repo = _registry(registry)
    tag = _tag(repo, version)
    name = f"{split}.parquet"
    expected = _expected_md5s(repo, tag)[name]
    with _dvc_filesystem(repo, tag) as fs, fs.open(f"{DATA_PATH}/{name}", "rb") as handle:
        payload = handle.read()
    actual = hashlib.md5(payload).hexdigest()
    if actual != expected:
        raise RegistryError(_corrupt_message(tag, name, actual, expected))
    return pl.read_parquet(io.BytesIO(payload))


@contextmanager
def _dvc_filesystem(repo: Path, tag: str) -> Iterator[Any]:
    """DVC's public file system over the registry at `tag`: cache first, then the remote."""
    from dvc.api import DVCFileSystem  # imported lazily: DVC takes about a second to import

    try:
        fs = DVCFileSystem(str(repo), rev=tag)
    except Exception as exc:
        raise RegistryError(f"Cannot open registry {repo} at {tag}: {exc}") from exc
    try:
        yield fs
    except FileNotFoundError as exc:
        raise RegistryError(f"{tag} in {repo}: {exc}") from exc
    except Exception as exc:
        if isinstance(exc, RegistryError):
            raise
        raise RegistryError(
            f"Fetching {tag} from registry {repo} failed (is its DVC remote reachable? "
            f"`dvc remote list` in {repo} shows it; credentials go in .dvc/config.local): {exc}"
        ) from exc
    finally:
        fs.close()


def _expected_md5s(repo: Path, tag: str) -> dict[str, str]:
    metadata = read_card(repo, tag)
    if metadata is None:
        raise RegistryError(f"{tag} in {repo} has no catalog metadata.json: not a refinery tag.")
    return dict(metadata["files"])


def _verify(directory: Path, expected: dict[str, str], tag: str) -> None:
    for name, md5 in expected.items():
        path = directory / name
        if not path.exists():
            raise RegistryError(f"{tag}: {name} is missing from the fetched data.")
        actual = file_md5(path)
        if actual != md5:
            raise RegistryError(_corrupt_message(tag, name, actual, md5))


def _corrupt_message(tag: str, name: str, actual: str, expected: str) -> str:
    return (
        f"{tag}: {name} has md5 {actual}, but {expected} was published. The DVC cache or "
        "remote holds a corrupt copy; remove it from the cache and fetch again."
    )


# -- command line ----------------------------------------------------------------------------


def _print_versions(versions: list[VersionInfo]) -> None:
    if not versions:
        print("No training-set versions published yet.")
        return
    header = f"{'version':<8} {'tag':<22} {'commit':<10} {'date':<26} " + " ".join(
        f"{name:>10}" for name in SPLIT_NAMES
    )
    print(header)
    for info in versions:
        rows = " ".join(f"{info.rows[name]:>10}" for name in SPLIT_NAMES)
        print(f"{info.name:<8} {info.tag:<22} {info.commit[:10]:<10} {info.date:<26} {rows}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="refinery-datasets",
        description="List, inspect and fetch training-set versions of the DVC data registry.",
    )
    parser.add_argument(
        "--registry", help="registry repo (default: $REFINERY_DATA_DIR/registry)", default=None
    )
    commands = parser.add_subparsers(dest="command", required=True)
    list_cmd = commands.add_parser("list", help="published versions, oldest first")
    list_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    show_cmd = commands.add_parser("show", help="metadata.json of a version")
    show_cmd.add_argument("version", help="v3, 3, training_set@v3 or latest")
    get_cmd = commands.add_parser("get", help="fetch a version's files into a directory")
    get_cmd.add_argument("version", help="v3, 3, training_set@v3 or latest")
    get_cmd.add_argument("dest_dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            versions = list_versions(args.registry)
            if args.json:
                print(json.dumps([asdict(v) for v in versions], indent=2, sort_keys=True))
            else:
                _print_versions(versions)
            return 0
        version = _resolve_cli_version(args.version, args.registry)
        if args.command == "show":
            print(json.dumps(read_metadata(version, args.registry), indent=2, sort_keys=True))
            return 0
        dest = checkout(version, args.dest_dir, args.registry)
        for path in sorted(dest.iterdir()):
            if not path.name.startswith("."):
                print(f"{file_md5(path)}  {path}")
        return 0
    except RegistryError as exc:
        print(f"refinery-datasets: error: {exc}", file=sys.stderr)
        return 1


def _resolve_cli_version(text: str, registry: str | None) -> str:
    if text != "latest":
        return text
    tag = latest_version(registry)
    if tag is None:
        raise RegistryError("No training-set version is published yet.")
    return tag


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = [
    "VersionInfo",
    "checkout",
    "default_registry",
    "latest_version",
    "list_versions",
    "load_split",
    "main",
    "read_metadata",
    "read_profile",
    "registry_path",
    "tag_for_version",
]
