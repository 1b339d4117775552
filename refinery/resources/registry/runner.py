"""Running git and DVC against the registry, and the file lock every publish holds.

git runs as a subprocess; DVC runs in-process through `dvc.repo.Repo` (its CLI costs a second
or two of imports per call). Failures become RegistryError naming the command, the repo and
DVC's own log lines.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
DVC_LOCK_HELD = "Unable to acquire lock"
SUBPROCESS_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}
log = logging.getLogger("refinery.registry")


class RegistryError(RuntimeError):
    """A registry operation failed; the message names the command, repo or remote and a fix."""


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
    """Run the dvc CLI; when another DVC process holds the repo lock, wait with backoff."""
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
    remote: str | None = None,
    remote_config: Mapping[str, str] | None = None,
) -> T:
    """Run `action(dvc.repo.Repo)` in-process.

    `remote` / `remote_config` override that remote's settings for this call only (DVC's own
    `Repo(remote=..., remote_config=...)`), so data can be pushed to a new URL before any
    config file says so. When another DVC process holds the repo lock, wait with backoff and
    retry; any other DVC failure becomes a RegistryError carrying DVC's own log lines.
    """
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo

    deadline = time.monotonic() + lock_wait_seconds
    delay = 0.2
    overrides: dict[str, Any] = {}
    if remote:
        overrides["remote"] = remote
    if remote_config:
        overrides["remote_config"] = dict(remote_config)
    while True:
        collector = _CollectLogs()
        dvc_loggers = [logging.getLogger(name) for name in ("dvc", "dvc_data", "dvc_objects")]
        for dvc_logger in dvc_loggers:
            dvc_logger.addHandler(collector)
        try:
            with Repo(str(repo), **overrides) as dvc_repo:
                dvc_repo.scm_context.quiet = True  # no "To track the changes with git" on stdout
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


@contextmanager
def exclusive_lock(path: Path, timeout_seconds: float) -> Iterator[None]:
    """An flock held for a whole publish, so concurrent publishes (threads or processes) queue.

    The kernel drops the lock when its holder dies, SIGKILL included: a killed publish never
    leaves a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    delay = 0.05
    with path.open("a") as handle:
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    log.info("Waiting for the registry lock %s (another publish holds it)", path)
                    announced = True
                if time.monotonic() >= deadline:
                    raise RegistryError(
                        f"Waited {timeout_seconds:.0f} s for the registry lock {path}: another "
                        "publish is still running. Retry later, or raise lock_timeout_seconds."
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
