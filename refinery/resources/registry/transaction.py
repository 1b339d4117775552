"""A publish as one transaction: lock, repair, read, write, push, commit, tag.

Everything below runs while the registry's file lock is held (`open_transaction`), so two
publishes never interleave. The order of a version is fixed:

    copy the build in -> dvc add -> dvc push -> git commit (with a `Refinery-Version: N`
    trailer) -> git tag training_set@vN.0.0 (annotation = the commit message)

A SIGKILL can stop it anywhere. The next transaction starts with `repair`, which:

- puts refinery's paths (`datasets/`, `catalog/`) back to HEAD: whatever was copied, added or
  staged but not committed is discarded, and the data folder is checked out from the cache;
- tags every version commit whose tag is missing (a kill between commit and tag) with the
  commit's own message, so the data it describes is the data it carries.

A commit always points at pushed data (push comes first), and the tag is only ever made from a
commit's own message, so a tag and its annotation always describe their own data.

The remote's URL in the tracked `.dvc/config` changes only when the configured URL does: the
data is pushed to the new URL first (DVC's per-call remote override), then the config is
written and committed. refinery remembers the URL it last applied (`.git/refinery/remote.json`);
a tracked URL that differs from it was changed by someone else (`dvc remote modify`) and is an
error, never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinery.faults import kill_point
from refinery.resources.registry.catalog import (
    ARTIFACT_NAME,
    CARD_FILES,
    CARD_PATH,
    DATA_PATH,
    POINTER_PATH,
    SPLIT_ORDER,
    VERSION_TRAILER,
    commit_version,
    read_card,
    tag_for_version,
    version_tags,
)
from refinery.resources.registry.runner import (
    RegistryError,
    dvc_api,
    exclusive_lock,
    git,
    log,
    run_command,
)

LOCK_FILE = ".refinery-registry.lock"
STATE_FILE = Path(".git") / "refinery" / "remote.json"
INCOMING = f".{Path(DATA_PATH).name}.incoming"
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
SETUP_FILES = (".gitignore", "dvc.yaml", ".dvcignore", ".dvc/.gitignore")
VERSION_FILES = (POINTER_PATH, str(Path(DATA_PATH).parent / ".gitignore"), CARD_PATH)


@dataclass(frozen=True)
class RegistrySpec:
    """Everything a transaction needs to know, resolved (absolute paths, no defaults left)."""

    repo: Path
    remote_name: str
    remote_url: str
    remote_secrets: Mapping[str, str] = field(default_factory=dict)
    git_user_name: str = "refinery"
    git_user_email: str = "refinery@localhost"
    lock_timeout_seconds: float = 900.0


@dataclass(frozen=True)
class Published:
    """What a publish did: the version its content is in, and whether it made it."""

    created: bool
    version: int
    tag: str
    metadata: dict[str, Any]


@contextmanager
def open_transaction(spec: RegistrySpec) -> Iterator[Callable[..., Published]]:
    """Hold the registry lock, repair what a killed publish left, then yield `publish`.

    `publish(source_dir, lineage=...)` may be called inside; whatever the caller writes
    inside the block (the training set itself) is also under the lock.
    """
    with exclusive_lock(spec.repo / LOCK_FILE, spec.lock_timeout_seconds):
        kill_point("registry.after_lock")
        initialize(spec)
        repair(spec)
        reconcile_remote(spec)
        yield lambda source_dir, lineage="": publish(spec, Path(source_dir), lineage)


# -- setup ---------------------------------------------------------------------------------


def initialize(spec: RegistrySpec) -> None:
    """Create or complete the registry: git repo, identity, DVC, dvc.yaml, the setup commit."""
    repo = spec.repo
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        git(repo, "init", "--quiet", "--initial-branch=main", what="git init")
    for key, value in (
        ("user.name", spec.git_user_name),
        ("user.email", spec.git_user_email),
        ("commit.gpgsign", "false"),
        ("tag.gpgsign", "false"),
    ):
        if git(repo, "config", "--local", "--get", key, check=False) != value:
            git(repo, "config", "--local", key, value, what="git config")
    if not (repo / ".dvc" / "config").exists():
        from dvc.repo import Repo

        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            Repo.init(str(repo), force=(repo / ".dvc").exists()).close()
    gitignore = repo / ".gitignore"
    if LOCK_FILE not in (gitignore.read_text() if gitignore.exists() else ""):
        with gitignore.open("a") as handle:
            handle.write(f"{LOCK_FILE}\n")
    if not (repo / "dvc.yaml").exists():
        (repo / "dvc.yaml").write_text(DVC_YAML)
    # .dvc/config only in the very first commit: later it changes only with the remote
    first = not _has_head(repo)
    setup = [*SETUP_FILES, ".dvc/config"] if first else list(SETUP_FILES)
    present = [name for name in setup if (repo / name).exists()]
    git(repo, "add", "--", *present, what="git add")
    if first or git(repo, "status", "--porcelain", "--", *present):
        git(
            repo,
            "commit",
            "--quiet",
            "-m",
            "Configure the training-set registry",
            "--",
            *present,
            what="git commit",
        )


def _has_head(repo: Path) -> bool:
    return (
        run_command(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"], repo, what="git", check=False
        ).returncode
        == 0
    )


def _in_head(repo: Path, path: str) -> bool:
    return bool(git(repo, "ls-tree", "--name-only", "HEAD", "--", path, check=False))


# -- repair --------------------------------------------------------------------------------


def repair(spec: RegistrySpec) -> None:
    """Undo an interrupted publish's uncommitted work; tag a committed but untagged version."""
    repo = spec.repo
    shutil.rmtree(repo / Path(DATA_PATH).parent / INCOMING, ignore_errors=True)
    if git(repo, "status", "--porcelain", "--", "datasets", "catalog"):
        log.warning("Registry %s: discarding an interrupted publish's uncommitted files", repo)
        git(repo, "reset", "--quiet", "HEAD", "--", "datasets", "catalog", what="repair")
        tracked = [p for p in ("datasets", "catalog") if _in_head(repo, p)]
        if tracked:
            git(repo, "checkout", "--quiet", "HEAD", "--", *tracked, what="repair")
        git(repo, "clean", "--quiet", "-fd", "--", "datasets", "catalog", what="repair")
    _restore_data(spec)
    _tag_untagged_versions(repo)


def _restore_data(spec: RegistrySpec) -> None:
    """Make the DVC-tracked data folder hold exactly HEAD's version (from the cache)."""
    repo = spec.repo
    data_dir = repo / DATA_PATH
    if not _in_head(repo, POINTER_PATH):
        shutil.rmtree(data_dir, ignore_errors=True)
        return
    card = read_card(repo, "HEAD") or {}
    expected = {**card.get("files", {})}
    metadata = run_command(
        ["git", "show", f"HEAD:{CARD_PATH}/metadata.json"], repo, what="repair", check=False
    )
    expected["metadata.json"] = hashlib.md5(metadata.stdout.encode()).hexdigest()
    if _md5s(data_dir) == expected:
        return
    log.warning("Registry %s: restoring %s from the DVC cache", repo, DATA_PATH)
    pointer = str(repo / POINTER_PATH)
    try:
        dvc_api(repo, lambda r: r.checkout(targets=[pointer], force=True), what="dvc checkout")
    except RegistryError:  # not in the cache (cleaned?): fetch it from the remote
        dvc_api(
            repo,
            lambda r: r.pull(targets=[pointer], remote=spec.remote_name, force=True),
            what="dvc pull",
        )


def _md5s(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    return {
        path.name: hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file()
    }


def _tag_untagged_versions(repo: Path) -> None:
    """Roll forward: every version commit since the newest tag gets its tag, from its message."""
    if not _has_head(repo):
        return
    tags = version_tags(repo)
    span = f"{tags[max(tags)]}..HEAD" if tags else "HEAD"
    listed = git(repo, "log", "--reverse", "--format=%H%x1f%B%x1e", span, what="repair")
    for entry in filter(None, (item.strip("\n") for item in listed.split("\x1e"))):
        commit, message = entry.split("\x1f", 1)
        version = commit_version(message)
        if version is None:
            continue
        tag = tag_for_version(version)
        if version in tags:
            tagged = git(repo, "rev-list", "-n", "1", tags[version], what="repair")
            if tagged != commit:  # left by the old wedge: a retry committed the number again
                log.warning(
                    "Registry %s: commit %s says %s v%s but %s is %s; leaving it untagged",
                    repo,
                    commit[:10],
                    ARTIFACT_NAME,
                    version,
                    tag,
                    tagged[:10],
                )
            continue
        log.warning("Registry %s: tagging %s, committed by an interrupted publish", repo, tag)
        git(repo, "tag", "--annotate", tag, "-m", message, commit, what=f"tagging {tag}")
        tags[version] = tag


# -- the remote ------------------------------------------------------------------------------


def _dvc_config(repo: Path) -> Any:
    from dvc.config import Config

    return Config(dvc_dir=str(repo / ".dvc"), validate=False)


def _head_remote_url(repo: Path, name: str) -> str | None:
    shown = run_command(
        ["git", "show", "HEAD:.dvc/config"], repo, what="reading .dvc/config", check=False
    )
    if shown.returncode != 0:
        return None
    from configobj import ConfigObj

    url = ConfigObj(shown.stdout.splitlines()).get(f'remote "{name}"', {}).get("url")
    if url and "://" not in url and not Path(url).is_absolute():
        return str((repo / ".dvc" / url).resolve())  # as DVC reads it: relative to .dvc/
    return url


def _read_state(repo: Path) -> dict[str, str]:
    path = repo / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _write_state(repo: Path, state: Mapping[str, str]) -> None:
    path = repo / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(state), sort_keys=True))
    os.replace(tmp, path)


def reconcile_remote(spec: RegistrySpec) -> None:
    """Make the tracked remote URL the configured one, if (and only if) refinery owns it."""
    repo, name, want = spec.repo, spec.remote_name, spec.remote_url
    repo_conf = _dvc_config(repo).read("repo")
    current = repo_conf.get("remote", {}).get(name, {}).get("url")
    default = repo_conf.get("core", {}).get("remote")
    head_url = _head_remote_url(repo, name)
    state = _read_state(repo)
    applied = state.get(name, head_url)
    if current is not None and current != want and current != applied:
        raise RegistryError(
            f"Registry {repo}: DVC remote '{name}' is {current} in .dvc/config, but refinery last "
            f"set it to {applied} and is configured with {want}: it was changed outside "
            "refinery (e.g. `dvc remote modify`), and refinery does not overwrite it. Either "
            f"configure DvcRegistry(remote_url={current!r}) to adopt it, or put it back with "
            f"`dvc remote modify {name} url {want}` in {repo}."
        )
    has_data = _in_head(repo, POINTER_PATH)
    if current != want or default != name:
        if has_data:
            _push_head(spec)
            kill_point("registry.after_remote_push")
        with _dvc_config(repo).edit("repo") as conf:
            conf.setdefault("core", {})["remote"] = name
            conf.setdefault("remote", {}).setdefault(name, {})["url"] = want
        kill_point("registry.after_remote_config")
    elif head_url != want and has_data:
        _push_head(spec)  # written by a publish killed before its commit: the push is redone
    if head_url != want or default != name:
        git(repo, "add", "--", ".dvc/config", what="git add")
        if git(repo, "status", "--porcelain", "--", ".dvc/config"):
            git(
                repo,
                "commit",
                "--quiet",
                "-m",
                f"Use DVC remote '{name}' at {want}",
                "--",
                ".dvc/config",
                what="git commit",
            )
    if state.get(name) != want:
        _write_state(repo, {**state, name: want})
    _write_secrets(spec)  # after the URL: DVC validates a remote section as a whole


def _push_head(spec: RegistrySpec) -> None:
    """Push HEAD's version to the configured URL before any config file names that URL."""
    target = str(spec.repo / POINTER_PATH)
    try:
        dvc_api(
            spec.repo,
            lambda r: r.push(targets=[target], remote=spec.remote_name),
            what="dvc push",
            remote=spec.remote_name,
            remote_config={"url": spec.remote_url, **spec.remote_secrets},
        )
    except RegistryError as exc:
        raise RegistryError(
            f"Could not push the latest version to DVC remote '{spec.remote_name}' "
            f"({spec.remote_url}); nothing was committed or tagged and .dvc/config still names "
            "the previous remote. Fix the remote (URL, credentials, reachability) and "
            f"materialize ml/training_dataset again.\n{exc}"
        ) from exc


def _write_secrets(spec: RegistrySpec) -> None:
    """Credentials go to `.dvc/config.local` (never tracked), created and kept 0600."""
    path = spec.repo / ".dvc" / "config.local"
    if not spec.remote_secrets and not path.exists():
        return
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(path, 0o600)
    if not spec.remote_secrets:
        return
    config = _dvc_config(spec.repo)
    local = config.read("local").get("remote", {}).get(spec.remote_name, {})
    if all(local.get(key) == value for key, value in spec.remote_secrets.items()):
        return
    with config.edit("local") as conf:
        conf.setdefault("remote", {}).setdefault(spec.remote_name, {}).update(spec.remote_secrets)
    os.chmod(path, 0o600)


# -- publishing ----------------------------------------------------------------------------


def publish(spec: RegistrySpec, source_dir: Path, lineage: str) -> Published:
    """Publish `source_dir` (a written training set) as the next version, if its content changed.

    Must run inside `open_transaction` (lock held, registry repaired).
    """
    repo = spec.repo
    metadata = _read_metadata(source_dir)
    tags = version_tags(repo)
    if tags:
        latest = max(tags)
        published = read_card(repo, tags[latest]) or {}
        if published.get("content_md5") == metadata["content_md5"]:
            return Published(False, latest, tags[latest], published)
    version = max(tags, default=0) + 1
    tag = tag_for_version(version)
    data_dir = repo / DATA_PATH
    incoming = data_dir.with_name(INCOMING)
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    for source in sorted(source_dir.iterdir()):
        if source.is_file() and not source.name.startswith("."):
            shutil.copyfile(source, incoming / source.name)
    # from here on only the copy counts: the message is built from the bytes that get published
    metadata = _read_metadata(incoming)
    _verify_copy(incoming, metadata, source_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    incoming.rename(data_dir)
    card_dir = repo / CARD_PATH
    card_dir.mkdir(parents=True, exist_ok=True)
    for name in CARD_FILES:
        shutil.copyfile(data_dir / name, card_dir / name)
    kill_point("registry.after_copy")
    try:
        dvc_api(repo, lambda r: r.add(str(data_dir)), what=f"dvc add of {tag}")
        kill_point("registry.after_add")
        _push_version(spec, tag)
        kill_point("registry.after_push")
    except RegistryError:
        repair(spec)
        raise
    git(repo, "add", "--", *VERSION_FILES, what="git add")
    kill_point("registry.after_git_add")
    message = commit_message(version, metadata, lineage)
    git(repo, "commit", "--quiet", "-m", message, "--", *VERSION_FILES, what=f"commit of {tag}")
    kill_point("registry.after_commit")
    git(repo, "tag", "--annotate", tag, "-m", message, what=f"tagging {tag}")
    kill_point("registry.after_tag")
    return Published(True, version, tag, metadata)


def commit_message(version: int, metadata: Mapping[str, Any], lineage: str) -> str:
    summary = ", ".join(
        f"{name} {info['rows']} rows (label rate {info['label_rate']})"
        for name, info in sorted(
            metadata["splits"].items(), key=lambda item: SPLIT_ORDER.index(item[0])
        )
    )
    body = f"content md5 {metadata['content_md5']}\n{lineage}".rstrip()
    return f"{ARTIFACT_NAME} v{version}: {summary}\n\n{body}\n\n{VERSION_TRAILER}: {version}\n"


def _read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / "metadata.json"
    if not path.exists():
        raise RegistryError(
            f"{directory} holds no metadata.json: not a written training set "
            "(run the ml/training_dataset asset first)."
        )
    return json.loads(path.read_text())


def _verify_copy(copy: Path, metadata: Mapping[str, Any], source_dir: Path) -> None:
    """Every content file of the copy has the md5 its metadata.json records."""
    actual = _md5s(copy)
    for name, md5 in metadata.get("files", {}).items():
        if actual.get(name) != md5:
            raise RegistryError(
                f"{source_dir}/{name} does not match its metadata.json (md5 "
                f"{actual.get(name)}, recorded {md5}): the training set changed while it was "
                "being published. Write it inside the registry transaction (DvcRegistry."
                "transaction()) and publish again."
            )


def _push_version(spec: RegistrySpec, tag: str) -> None:
    data_dir = str(spec.repo / DATA_PATH)
    try:
        dvc_api(
            spec.repo,
            lambda r: r.push(targets=[data_dir], remote=spec.remote_name),
            what=f"dvc push of {tag}",
        )
    except RegistryError as exc:
        raise RegistryError(
            f"Could not push {tag} to DVC remote '{spec.remote_name}' ({spec.remote_url}); "
            "nothing was committed or tagged and the registry is back at its last version. "
            "Fix the remote (URL, credentials, reachability) and materialize "
            f"ml/training_dataset again.\n{exc}"
        ) from exc
