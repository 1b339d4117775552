"""The DVC data registry: a git repo of its own where every training-set version is a tag.

Layout of `registry/`:

    dvc.yaml                          declares the `training_set` artifact (type: dataset)
    datasets/training_set/            DVC-tracked: train/validation/test.parquet, profile.json,
                                      metadata.json (the data lives in the cache and the remote)
    datasets/training_set.dvc         the pointer git versions
    catalog/training_set/             git-tracked copies of metadata.json and profile.json, so
                                      listing versions and reading a profile need no data fetch

A version is `dvc add` + `dvc push` + git commit + an annotated tag `training_set@vN.0.0`.
The tag is GTO's format (semver is required by GTO's tag grammar), which is what
`dvc artifacts get <registry> training_set --rev vN.0.0` and `gto show` resolve; everywhere
in refinery `vN`, `N` and `training_set@vN` are accepted as short forms.

Version identity is the md5 of the content files (the three splits and profile.json), not of
metadata.json: metadata.json also carries run lineage (materialization ids), which changes
on every rebuild. A rebuild whose content md5 equals the latest version's makes no version.

Push happens before the commit, so a commit (and a tag) always points at pushed data; when the
push fails the working tree is rolled back to the last version and the error names the remote.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dagster import ConfigurableResource
from pydantic import Field

from refinery.resources.lake import LakePaths, data_dir_from_env

ARTIFACT_NAME = "training_set"
DATA_PATH = "datasets/training_set"
CARD_PATH = "catalog/training_set"
CARD_FILES = ("metadata.json", "profile.json")
SPLIT_ORDER = ("train", "validation", "test")
DEFAULT_REMOTE_NAME = "storage"
LOCK_FILE = ".refinery-registry.lock"
TAG_PATTERN = re.compile(rf"^{ARTIFACT_NAME}@v(\d+)\.0\.0$")
VERSION_PATTERN = re.compile(rf"^(?:{ARTIFACT_NAME}@)?v?(\d+)(?:\.0\.0)?$")
DVC_LOCK_HELD = "Unable to acquire lock"
T = TypeVar("T")
SUBPROCESS_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}
DVC_YAML = f"""\
artifacts:
  {ARTIFACT_NAME}:
    path: {DATA_PATH}
    type: dataset
    desc: Temporal train/validation/test split of gold/training_examples (refinery)
    labels:
      - refinery
      - training-set
"""


class RegistryError(RuntimeError):
    """A registry operation failed; the message names the command, repo or remote and a fix."""


def tag_for_version(version: int) -> str:
    return f"{ARTIFACT_NAME}@v{version}.0.0"


def parse_version(text: str | int) -> int:
    """`3`, `"3"`, `"v3"`, `"training_set@v3"` and `"training_set@v3.0.0"` all mean version 3."""
    match = VERSION_PATTERN.match(str(text).strip())
    if not match or int(match.group(1)) < 1:
        raise RegistryError(
            f"{text!r} is not a training-set version; use e.g. v3, 3 or {tag_for_version(3)}."
        )
    return int(match.group(1))


def default_registry_dir() -> Path:
    return LakePaths(data_dir_from_env()).registry


def run_command(
    args: Sequence[str],
    cwd: Path,
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a git/dvc command; on failure raise RegistryError with its stderr and the repo."""
    completed = subprocess.run(
        list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **SUBPROCESS_ENV, **(env or {})},
        check=False,
    )
    if check and completed.returncode != 0:
        output = (completed.stderr.strip() or completed.stdout.strip())[-2000:]
        raise RegistryError(
            f"{what} failed in registry {cwd} (exit {completed.returncode}): "
            f"`{' '.join(args)}`\n{output}"
        )
    return completed


def git(repo: Path, *args: str, what: str = "git", check: bool = True) -> str:
    return run_command(["git", *args], repo, what=what, check=check).stdout.strip()


def dvc_executable() -> list[str]:
    """The dvc of this environment (the one next to our Python), not whatever is on PATH."""
    beside = Path(sys.executable).with_name("dvc")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "dvc"]


def dvc(
    repo: Path,
    *args: str,
    what: str = "dvc",
    lock_wait_seconds: float = 120.0,
) -> str:
    """Run dvc; when another DVC process holds the repo lock, wait with backoff and retry."""
    deadline = time.monotonic() + lock_wait_seconds
    delay = 0.2
    while True:
        try:
            return run_command([*dvc_executable(), *args], repo, what=what).stdout.strip()
        except RegistryError as exc:
            if DVC_LOCK_HELD not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


class _CollectLogs(logging.Handler):
    """Keeps DVC's log records of one call: its exceptions say little, its logs say why."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text} ({record.exc_info[1]!r})"
        self.lines.append(text)


def dvc_api(
    repo: Path,
    action: Callable[[Any], T],
    *,
    what: str,
    lock_wait_seconds: float = 120.0,
) -> T:
    """Run `action(dvc.repo.Repo)` in-process (DVC's CLI costs ~1-2 s of imports per call).

    When another DVC process holds the repo lock, wait with backoff and retry; any other DVC
    failure becomes a RegistryError carrying DVC's own log lines.
    """
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo

    deadline = time.monotonic() + lock_wait_seconds
    delay = 0.2
    while True:
        collector = _CollectLogs()
        dvc_loggers = [logging.getLogger(name) for name in ("dvc", "dvc_data", "dvc_objects")]
        for dvc_logger in dvc_loggers:
            dvc_logger.addHandler(collector)
        try:
            with Repo(str(repo)) as dvc_repo:
                return action(dvc_repo)
        except LockError as exc:
            if time.monotonic() + delay > deadline:
                raise RegistryError(
                    f"{what}: DVC's repo lock in {repo} stayed held for {lock_wait_seconds:.0f} s. "
                    f"If no DVC process is running, remove {repo / '.dvc' / 'tmp' / 'lock'}."
                ) from exc
        except (DvcException, OSError) as exc:
            details = "\n".join(dict.fromkeys(collector.lines))
            raise RegistryError(
                f"{what} failed in registry {repo}: {exc}\n{details}".rstrip()
            ) from exc
        finally:
            for dvc_logger in dvc_loggers:
                dvc_logger.removeHandler(collector)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def version_tags(repo: Path) -> dict[int, str]:
    """Version number -> tag, for every `training_set@vN.0.0` tag of the repo."""
    if not (repo / ".git").exists():
        return {}
    listed = git(repo, "tag", "--list", f"{ARTIFACT_NAME}@v*", what="listing versions")
    found = {}
    for tag in listed.splitlines():
        match = TAG_PATTERN.match(tag.strip())
        if match:
            found[int(match.group(1))] = tag.strip()
    return dict(sorted(found.items()))


def read_card(repo: Path, rev: str, name: str = "metadata.json") -> dict[str, Any] | None:
    """A git-tracked card file (metadata.json / profile.json) as of `rev`; None if absent."""
    shown = run_command(
        ["git", "show", f"{rev}:{CARD_PATH}/{name}"], repo, what="reading", check=False
    )
    if shown.returncode != 0:
        return None
    return json.loads(shown.stdout)


@contextmanager
def exclusive_lock(path: Path, timeout_seconds: float) -> Iterator[None]:
    """An flock held for a whole snapshot, so concurrent snapshots (threads or processes) queue."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    delay = 0.05
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RegistryError(
                        f"Waited {timeout_seconds:.0f} s for the registry lock {path}: another "
                        "snapshot is still running. Retry later, or raise lock_timeout_seconds."
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class SnapshotResult:
    created: bool  # False: the content equals the latest version, nothing was committed
    version: int
    tag: str
    commit: str
    content_md5: str
    registry: Path
    remote_url: str
    file_md5s: dict[str, str] = field(default_factory=dict)

    @property
    def fetch_commands(self) -> dict[str, str]:
        short = f"{ARTIFACT_NAME}@v{self.version}"
        registry = "" if self.registry == default_registry_dir() else f" --registry {self.registry}"
        return {
            "refinery": (
                f"uv run refinery-datasets{registry} get {short} ./{ARTIFACT_NAME}-v{self.version}"
            ),
            "dvc_get": f"uv run dvc get {self.registry} {DATA_PATH} --rev {self.tag}",
            "dvc_artifacts_get": (
                f"uv run dvc artifacts get {self.registry} {ARTIFACT_NAME} "
                f"--rev v{self.version}.0.0"
            ),
        }


class DvcRegistry(ConfigurableResource):
    """The DVC data registry the training sets are published to.

    The remote comes from configuration: a local folder by default (`<data root>/dvc-remote`),
    or e.g. `s3://bucket/prefix` with credentials from the environment
    (`access_key_id=EnvVar("AWS_ACCESS_KEY_ID")`, ...). Credentials are written with
    `dvc remote modify --local`, i.e. to `.dvc/config.local`, which git never sees.
    S3 remotes need the `dvc-s3` plugin installed (`dvc[s3]`).
    """

    registry_dir: str | None = Field(
        default=None, description="The registry git repo; default <REFINERY_DATA_DIR>/registry."
    )
    remote_name: str = Field(default=DEFAULT_REMOTE_NAME)
    remote_url: str | None = Field(
        default=None, description="DVC remote URL; default <REFINERY_DATA_DIR>/dvc-remote."
    )
    access_key_id: str | None = Field(default=None, description="S3 key id (use EnvVar).")
    secret_access_key: str | None = Field(default=None, description="S3 secret (use EnvVar).")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint URL.")
    region: str | None = Field(default=None, description="S3 region.")
    git_user_name: str = Field(default="refinery")
    git_user_email: str = Field(default="refinery@localhost")
    lock_timeout_seconds: float = Field(default=900.0)

    def rooted_at(self, paths: LakePaths) -> DvcRegistry:
        """This registry with unset locations filled from a data root (the `lake` resource's)."""
        settings = {name: getattr(self, name) for name in type(self).model_fields}
        settings["registry_dir"] = self.registry_dir or str(paths.registry)
        settings["remote_url"] = self.remote_url or str(paths.dvc_remote)
        return DvcRegistry(**settings)

    @property
    def path(self) -> Path:
        return Path(self.registry_dir).resolve() if self.registry_dir else default_registry_dir()

    @property
    def resolved_remote_url(self) -> str:
        if self.remote_url:
            if "://" in self.remote_url:
                return self.remote_url
            return str(Path(self.remote_url).resolve())
        return str(LakePaths(data_dir_from_env()).dvc_remote)

    def _local_remote_settings(self) -> dict[str, str]:
        settings = {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "endpointurl": self.endpoint_url,
            "region": self.region,
        }
        return {key: value for key, value in settings.items() if value}

    # -- setup ---------------------------------------------------------------------------

    def ensure_initialized(self) -> Path:
        """Create or reconcile the registry: git repo, identity, DVC, remote, dvc.yaml."""
        with exclusive_lock(self.path / LOCK_FILE, self.lock_timeout_seconds):
            self._ensure_initialized()
        return self.path

    def _ensure_initialized(self) -> None:
        repo = self.path
        repo.mkdir(parents=True, exist_ok=True)
        if not (repo / ".git").exists():
            git(repo, "init", "--quiet", "--initial-branch=main", what="git init")
        for key, value in (
            ("user.name", self.git_user_name),
            ("user.email", self.git_user_email),
            ("commit.gpgsign", "false"),
            ("tag.gpgsign", "false"),
        ):
            if git(repo, "config", "--local", "--get", key, check=False) != value:
                git(repo, "config", "--local", key, value, what="git config")
        if not (repo / ".dvc").exists():
            from dvc.repo import Repo

            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                Repo.init(str(repo)).close()
        self._ensure_remote()
        gitignore = repo / ".gitignore"
        if LOCK_FILE not in (gitignore.read_text() if gitignore.exists() else ""):
            with gitignore.open("a") as handle:
                handle.write(f"{LOCK_FILE}\n")
        if not (repo / "dvc.yaml").exists():
            (repo / "dvc.yaml").write_text(DVC_YAML)
        setup_files = (".gitignore", "dvc.yaml", ".dvc", ".dvcignore")
        git(repo, "add", "--", *setup_files, what="git add")
        if git(repo, "status", "--porcelain", "--", *setup_files):
            git(
                repo,
                "commit",
                "--quiet",
                "-m",
                "Configure the training-set registry",
                what="git commit",
            )

    def _ensure_remote(self) -> None:
        """Write the remote into `.dvc/config` (git) and its secrets into `.dvc/config.local`.

        Same files and format as `dvc remote add --default` / `dvc remote modify --local`
        (DVC's documented INI config), written directly: each dvc call costs a second or two.
        """
        section = f"'remote \"{self.remote_name}\"'"
        _update_dvc_config(
            self.path / ".dvc" / "config",
            {"core": {"remote": self.remote_name}, section: {"url": self.resolved_remote_url}},
        )
        secrets = self._local_remote_settings()
        if secrets:
            _update_dvc_config(self.path / ".dvc" / "config.local", {section: secrets})

    # -- publishing ----------------------------------------------------------------------

    def snapshot(self, source_dir: Path, *, lineage: str = "") -> SnapshotResult:
        """Publish `source_dir` (a written training set) as the next version, if it changed.

        `lineage` (run id, upstream materializations) goes into the commit message and the tag
        annotation. Snapshots queue on a file lock; DVC's own repo lock is retried with backoff.
        """
        source_dir = Path(source_dir)
        metadata_path = source_dir / "metadata.json"
        if not metadata_path.exists():
            raise RegistryError(
                f"{source_dir} holds no metadata.json: not a written training set "
                "(run the ml/training_dataset asset first)."
            )
        metadata = json.loads(metadata_path.read_text())
        content_md5 = metadata["content_md5"]
        with exclusive_lock(self.path / LOCK_FILE, self.lock_timeout_seconds):
            self._ensure_initialized()
            repo = self.path
            tags = version_tags(repo)
            if tags:
                latest = max(tags)
                published = read_card(repo, tags[latest]) or {}
                if published.get("content_md5") == content_md5:
                    return self._result(False, latest, tags[latest], published)
            version = max(tags, default=0) + 1
            return self._publish(source_dir, metadata, version, lineage)

    def _publish(
        self, source_dir: Path, metadata: dict[str, Any], version: int, lineage: str
    ) -> SnapshotResult:
        repo = self.path
        tag = tag_for_version(version)
        data_dir, card_dir = repo / DATA_PATH, repo / CARD_PATH
        previous = data_dir.with_name(f".{data_dir.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        if data_dir.exists():
            data_dir.rename(previous)
        data_dir.mkdir(parents=True)
        card_dir.mkdir(parents=True, exist_ok=True)
        for source in sorted(source_dir.iterdir()):
            if source.is_file() and not source.name.startswith("."):
                shutil.copyfile(source, data_dir / source.name)
        for name in CARD_FILES:
            shutil.copyfile(source_dir / name, card_dir / name)
        try:
            dvc_api(repo, lambda r: r.add(str(data_dir)), what=f"dvc add of {tag}")
            self._push(tag)
        except RegistryError:
            self._roll_back(previous)
            raise
        shutil.rmtree(previous, ignore_errors=True)
        git(
            repo,
            "add",
            f"{DATA_PATH}.dvc",
            str(Path(DATA_PATH).parent / ".gitignore"),
            CARD_PATH,
            what="git add",
        )
        summary = ", ".join(
            f"{name} {info['rows']} rows (label rate {info['label_rate']})"
            for name, info in sorted(
                metadata["splits"].items(), key=lambda item: SPLIT_ORDER.index(item[0])
            )
        )
        message = (
            f"{ARTIFACT_NAME} v{version}: {summary}\n\n"
            f"content md5 {metadata['content_md5']}\n{lineage}".rstrip()
            + "\n"
        )
        git(repo, "commit", "--quiet", "-m", message, what=f"git commit of {tag}")
        git(repo, "tag", "--annotate", tag, "-m", message, what=f"tagging {tag}")
        return self._result(True, version, tag, metadata)

    def _push(self, tag: str) -> None:
        data_dir = str(self.path / DATA_PATH)
        try:
            dvc_api(
                self.path,
                lambda r: r.push(targets=[data_dir], remote=self.remote_name),
                what=f"dvc push of {tag}",
            )
        except RegistryError as exc:
            raise RegistryError(
                f"Could not push {tag} to DVC remote '{self.remote_name}' "
                f"({self.resolved_remote_url}); nothing was committed or tagged and the registry "
                f"is back at its last version. Fix the remote (URL, credentials, reachability) "
                f"and materialize ml/training_dataset again.\n{exc}"
            ) from exc

    def _roll_back(self, previous: Path) -> None:
        """Put the working tree back to the last commit: its .dvc pointer, catalog and data."""
        repo = self.path
        git(repo, "reset", "--quiet", "--hard", "HEAD", what="rollback")
        git(
            repo,
            "clean",
            "--quiet",
            "-fd",
            "-e",
            previous.name,
            "--",
            "datasets",
            "catalog",
            what="rollback",
        )
        shutil.rmtree(repo / DATA_PATH, ignore_errors=True)
        if previous.exists():
            previous.rename(repo / DATA_PATH)

    def _result(
        self, created: bool, version: int, tag: str, metadata: Mapping[str, Any]
    ) -> SnapshotResult:
        commit = git(self.path, "rev-list", "-n", "1", tag, what="resolving tag")
        file_md5s = dict(metadata.get("files", {}))
        card = run_command(
            ["git", "show", f"{tag}:{CARD_PATH}/metadata.json"], self.path, what="reading"
        )
        file_md5s["metadata.json"] = hashlib.md5(card.stdout.encode()).hexdigest()
        return SnapshotResult(
            created=created,
            version=version,
            tag=tag,
            commit=commit,
            content_md5=metadata.get("content_md5", ""),
            registry=self.path,
            remote_url=self.resolved_remote_url,
            file_md5s=dict(sorted(file_md5s.items())),
        )


def _update_dvc_config(path: Path, settings: Mapping[str, Mapping[str, str]]) -> None:
    """Set options in a DVC config file (INI with quoted section names), keeping the rest."""
    parser = configparser.ConfigParser(interpolation=None)
    if path.exists():
        parser.read_string(path.read_text())
    changed = False
    for section, options in settings.items():
        if not parser.has_section(section):
            parser.add_section(section)
        for option, value in options.items():
            if parser.get(section, option, fallback=None) != value:
                parser.set(section, option, value)
                changed = True
    if changed:
        with path.open("w") as handle:
            parser.write(handle)
