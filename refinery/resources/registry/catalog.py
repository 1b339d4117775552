"""The read side of the registry: tags, versions and the git-tracked catalog cards.

Everything here reads git only (no DVC, no data), so it works on a bare clone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from refinery.resources.registry.runner import RegistryError, git, run_command

ARTIFACT_NAME = "training_set"
DATA_PATH = "datasets/training_set"
POINTER_PATH = f"{DATA_PATH}.dvc"
CARD_PATH = "catalog/training_set"
CARD_FILES = ("metadata.json", "profile.json")
SPLIT_ORDER = ("train", "validation", "test")
TAG_PATTERN = re.compile(rf"^{ARTIFACT_NAME}@v(\d+)\.0\.0$")
VERSION_PATTERN = re.compile(rf"^(?:{ARTIFACT_NAME}@)?v?(\d+)(?:\.0\.0)?$")
# the trailer every version commit carries: how a commit that lost its tag is recognised
VERSION_TRAILER = "Refinery-Version"
TRAILER_PATTERN = re.compile(rf"^{VERSION_TRAILER}: (\d+)\s*$", re.MULTILINE)
# version commits made before the trailer existed say it only in their subject
LEGACY_SUBJECT = re.compile(rf"^{ARTIFACT_NAME} v(\d+): ")


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


def latest_tag(repo: Path) -> str | None:
    """The tag of the newest version (e.g. `training_set@v3.0.0`), None if nothing is published
    or `repo` is no registry yet."""
    tags = version_tags(repo)
    return tags[max(tags)] if tags else None


def read_card(repo: Path, rev: str, name: str = "metadata.json") -> dict[str, Any] | None:
    """A git-tracked card file (metadata.json / profile.json) as of `rev`; None if absent."""
    shown = run_command(
        ["git", "show", f"{rev}:{CARD_PATH}/{name}"], repo, what="reading", check=False
    )
    if shown.returncode != 0:
        return None
    return json.loads(shown.stdout)


def commit_version(message: str) -> int | None:
    """The version a commit message declares: its `Refinery-Version: N` trailer, or (commits
    older than the trailer) its `training_set vN: ...` subject; None for other commits."""
    match = TRAILER_PATTERN.search(message) or LEGACY_SUBJECT.match(message)
    return int(match.group(1)) if match else None
