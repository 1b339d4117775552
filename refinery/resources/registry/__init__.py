"""The DVC data registry: a git repo of its own where every training-set version is a tag.

Layout of `registry/`:

    dvc.yaml                          declares the `training_set` artifact (type: dataset)
    datasets/training_set/            DVC-tracked: train/validation/test.parquet, profile.json,
                                      metadata.json (the data lives in the cache and the remote)
    datasets/training_set.dvc         the pointer git versions
    catalog/training_set/             git-tracked copies of metadata.json and profile.json, so
                                      listing versions and reading a profile need no data fetch

A version is `dvc add` + `dvc push` + git commit + an annotated tag `training_set@vN.0.0`, all
under one lock and repaired by the next publish if a crash stops it (`transaction.py`). The tag
is GTO's format (semver is required by GTO's tag grammar), which is what
`dvc artifacts get <registry> training_set --rev vN.0.0` and `gto show` resolve; everywhere
in refinery `vN`, `N` and `training_set@vN` are accepted as short forms.

Version identity is the md5 of the content files (the three splits and profile.json), not of
metadata.json: metadata.json also carries run lineage (materialization ids), which changes
on every rebuild. A rebuild whose content md5 equals the latest version's makes no version.

Modules, one job each: `catalog` (read side: tags, versions, cards), `transaction` (the publish),
`runner` (git/DVC calls and the file lock), `resource` (the Dagster resource).
"""

from refinery.resources.registry.catalog import (
    ARTIFACT_NAME,
    CARD_FILES,
    CARD_PATH,
    DATA_PATH,
    SPLIT_ORDER,
    TAG_PATTERN,
    VERSION_PATTERN,
    commit_version,
    latest_tag,
    parse_version,
    read_card,
    tag_for_version,
    version_tags,
)
from refinery.resources.registry.resource import (
    DEFAULT_REMOTE_NAME,
    DvcRegistry,
    Publisher,
    SnapshotResult,
)
from refinery.resources.registry.runner import (
    RegistryError,
    dvc,
    dvc_api,
    dvc_executable,
    exclusive_lock,
    git,
    run_command,
)
from refinery.resources.registry.transaction import DVC_YAML, LOCK_FILE, RegistrySpec

__all__ = [
    "ARTIFACT_NAME",
    "CARD_FILES",
    "CARD_PATH",
    "DATA_PATH",
    "DEFAULT_REMOTE_NAME",
    "DVC_YAML",
    "LOCK_FILE",
    "SPLIT_ORDER",
    "TAG_PATTERN",
    "VERSION_PATTERN",
    "DvcRegistry",
    "Publisher",
    "RegistryError",
    "RegistrySpec",
    "SnapshotResult",
    "commit_version",
    "dvc",
    "dvc_api",
    "dvc_executable",
    "exclusive_lock",
    "git",
    "latest_tag",
    "parse_version",
    "read_card",
    "run_command",
    "tag_for_version",
    "version_tags",
]
