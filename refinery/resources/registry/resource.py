"""`DvcRegistry`, the Dagster resource the training sets are published through."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dagster import ConfigurableResource
from pydantic import Field

from refinery.resources.lake import LakePaths
from refinery.resources.registry.catalog import ARTIFACT_NAME, CARD_PATH, DATA_PATH
from refinery.resources.registry.runner import RegistryError, exclusive_lock, git, run_command
from refinery.resources.registry.transaction import (
    LOCK_FILE,
    Published,
    RegistrySpec,
    initialize,
    open_transaction,
    reconcile_remote,
    repair,
)

DEFAULT_REMOTE_NAME = "storage"


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
        return {
            "refinery": (
                f"uv run refinery-datasets --registry {self.registry} get {short} "
                f"./{ARTIFACT_NAME}-v{self.version}"
            ),
            "dvc_get": f"uv run dvc get {self.registry} {DATA_PATH} --rev {self.tag}",
            "dvc_artifacts_get": (
                f"uv run dvc artifacts get {self.registry} {ARTIFACT_NAME} "
                f"--rev v{self.version}.0.0"
            ),
        }


class Publisher(Protocol):
    def __call__(self, source_dir: Path, *, lineage: str = "") -> SnapshotResult: ...


class DvcRegistry(ConfigurableResource):
    """The DVC data registry the training sets are published to.

    Its location comes from the data root: assets use `dvc_registry.rooted_at(lake.paths)`,
    which fills an unset `registry_dir` with `<data root>/registry` and an unset `remote_url`
    with `<data root>/dvc-remote`. It never reads the environment itself.

    The remote comes from configuration: a local folder by default, or e.g. `s3://bucket/prefix`
    with credentials from the environment (`access_key_id=EnvVar("AWS_ACCESS_KEY_ID")`, ...).
    Credentials are written to `.dvc/config.local` (mode 0600), which git never sees.
    S3 remotes need the `dvc-s3` plugin installed (`dvc[s3]`).
    """

    registry_dir: str | None = Field(
        default=None, description="The registry git repo; default <data root>/registry."
    )
    remote_name: str = Field(default=DEFAULT_REMOTE_NAME)
    remote_url: str | None = Field(
        default=None,
        description="DVC remote URL; default dvc-remote beside the registry (<data root>/dvc-remote).",
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
        if not self.registry_dir:
            raise RegistryError(
                "DvcRegistry has no registry_dir: use dvc_registry.rooted_at(lake.paths) (the "
                "lake resource's data root), or set registry_dir."
            )
        return Path(self.registry_dir).resolve()

    @property
    def resolved_remote_url(self) -> str:
        if not self.remote_url:
            return str(self.path.with_name("dvc-remote"))
        if "://" in self.remote_url:
            return self.remote_url
        return str(Path(self.remote_url).resolve())

    def _local_remote_settings(self) -> dict[str, str]:
        settings = {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "endpointurl": self.endpoint_url,
            "region": self.region,
        }
        return {key: value for key, value in settings.items() if value}

    @property
    def spec(self) -> RegistrySpec:
        return RegistrySpec(
            repo=self.path,
            remote_name=self.remote_name,
            remote_url=self.resolved_remote_url,
            remote_secrets=self._local_remote_settings(),
            git_user_name=self.git_user_name,
            git_user_email=self.git_user_email,
            lock_timeout_seconds=self.lock_timeout_seconds,
        )

    # -- setup ---------------------------------------------------------------------------

    def ensure_initialized(self) -> Path:
        """Create, repair or reconcile the registry: git repo, identity, DVC, remote, dvc.yaml."""
        spec = self.spec
        with exclusive_lock(spec.repo / LOCK_FILE, spec.lock_timeout_seconds):
            initialize(spec)
            repair(spec)
            reconcile_remote(spec)
        return spec.repo

    # -- publishing ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Publisher]:
        """The registry lock, held for a whole block; yields `publish(source_dir, lineage=)`.

        Write the training set inside the block and publish it there: no other publish can
        write or read in between. On entry, whatever a killed publish left is repaired.
        """
        spec = self.spec
        with open_transaction(spec) as publish:

            def publish_result(source_dir: Path, *, lineage: str = "") -> SnapshotResult:
                return self._result(publish(Path(source_dir), lineage))

            yield publish_result

    def snapshot(self, source_dir: Path, *, lineage: str = "") -> SnapshotResult:
        """Publish `source_dir` (a written training set) as the next version, if it changed.

        `lineage` (run id, upstream materializations) goes into the commit message and the tag
        annotation. Publishes queue on a file lock; DVC's own repo lock is retried with backoff.
        """
        with self.transaction() as publish:
            return publish(source_dir, lineage=lineage)

    def _result(self, published: Published) -> SnapshotResult:
        tag, metadata = published.tag, published.metadata
        commit = git(self.path, "rev-list", "-n", "1", tag, what="resolving tag")
        file_md5s: dict[str, Any] = dict(metadata.get("files", {}))
        card = run_command(
            ["git", "show", f"{tag}:{CARD_PATH}/metadata.json"], self.path, what="reading"
        )
        file_md5s["metadata.json"] = hashlib.md5(card.stdout.encode()).hexdigest()
        return SnapshotResult(
            created=published.created,
            version=published.version,
            tag=tag,
            commit=commit,
            content_md5=metadata.get("content_md5", ""),
            registry=self.path,
            remote_url=self.resolved_remote_url,
            file_md5s=dict(sorted(file_md5s.items())),
        )
