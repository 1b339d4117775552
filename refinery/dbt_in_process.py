"""dbt inside the gold step's own process (dbt's `dbtRunner`) instead of a `dbt` subprocess.

dagster-dbt runs every dbt command as a subprocess whose JSON log lines it reads back from stdout.
That subprocess starts a Python interpreter and imports dbt-core, the DuckDB adapter and DuckDB
again, although the step process that starts it has already imported most of them. Here the
same command line runs in a thread of the step process through dbt's programmatic entry point;
its events arrive through dbtRunner's callback and take the path the subprocess's log lines take
(`DbtCliInvocation.stream_raw_events` → `to_default_asset_events`), so the Dagster events, the
target dir and its artifacts (run_results.json, dbt.log) are the same. Measured on a daily
100k-event run (docs/BENCHMARKS.md, twelfth session): the gold step's time outside dbt's nodes
3.2 → 0.8 s, its node times ~1.4 s longer (dbt's threads share the interpreter with Dagster's
handling of its events), the step ~0.9 s shorter; one process holds DuckDB, not two.

What differs from the subprocess:
- dbt writes nothing to stdout itself (`DBT_LOG_LEVEL=none`); the events the subprocess would
  have printed (info and above) are printed by dagster-dbt's stream as before, into the step's
  captured logs. dbt.log in the target dir keeps the debug log (`DBT_LOG_LEVEL_FILE`).
- dbt reads its flags and the run's values (`env_var`, `run_var`) from os.environ: the
  invocation's environment is applied for as long as dbt runs and restored after, and one dbt
  invocation runs at a time in a process (`_ONE_AT_A_TIME`; the warehouse pool lets one gold
  run at a time anyway).
- a SIGKILL of the step kills dbt with it (DuckDB's WAL keeps what it committed, as before); an
  interrupted step (run termination) stops waiting, fails, and dbt's thread ends with the
  process.

`RefineryDbtCliResource.cli` (refinery/assets/gold/dbt_project.py) uses this class through
`in_process_dbt()`.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster_dbt.core.resource as dbt_resource_module
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from dagster_dbt.errors import DagsterDbtCliRuntimeError

_DONE = object()
_ONE_AT_A_TIME = threading.Lock()
# how often the waiting step wakes to let Dagster deliver an interrupt
_POLL_SECONDS = 0.5


@dataclass
class InProcessDbtInvocation(DbtCliInvocation):
    """A DbtCliInvocation whose dbt runs in this process: `process` is None, `args` the command
    line (without the executable), the outcome dbtRunner's result."""

    args: Sequence[str] = field(init=False, default=())
    _events: queue.Queue = field(init=False, default_factory=queue.Queue)
    _thread: threading.Thread | None = field(init=False, default=None)
    _result: Any = field(init=False, default=None)
    _finished: bool = field(init=False, default=False)

    @classmethod
    def run(
        cls,
        args: Sequence[str],
        env: dict[str, str],
        manifest: Mapping[str, Any],
        dagster_dbt_translator,
        project_dir,
        target_path,
        raise_on_error: bool,
        context,
        adapter,
        cli_version,
        dbt_project=None,
    ) -> InProcessDbtInvocation:
        invocation = cls(
            process=None,  # type: ignore[arg-type]  # no subprocess: see the module docstring
            manifest=manifest,
            project=dbt_project,
            dagster_dbt_translator=dagster_dbt_translator,
            project_dir=project_dir,
            target_path=target_path,
            raise_on_error=raise_on_error,
            context=context,
            adapter=adapter,
            cli_version=cli_version,
        )
        invocation.args = list(args[1:])  # args[0] is the dbt executable
        # nothing on stdout from dbt itself; the file log at the level the subprocess wrote it
        # (dbt's file level follows the stdout level unless it is set)
        quiet = {
            "DBT_LOG_LEVEL": "none",
            "DBT_LOG_LEVEL_FILE": env.get("DBT_LOG_LEVEL_FILE") or "debug",
        }
        invocation._start({**env, **quiet})
        return invocation

    def _start(self, env: Mapping[str, str]) -> None:
        from dbt.cli.main import dbtRunner  # ~1 s the first time; the step needs it only now

        changed = {name: value for name, value in env.items() if os.environ.get(name) != value}

        def invoke() -> None:
            with _ONE_AT_A_TIME, environment(changed):
                try:
                    self._result = dbtRunner(callbacks=[self._events.put]).invoke(self.args)
                except BaseException as error:  # noqa: BLE001 - reported by get_error
                    self._result = error
                finally:
                    try:
                        _release_warehouse()
                    finally:
                        self._events.put(_DONE)

        self._thread = threading.Thread(target=invoke, name="dbt", daemon=True)
        self._thread.start()

    def _stream_stdout(self) -> Iterator[dict[str, Any]]:
        """dbt's events as the subprocess's JSON log lines would have carried them: those at
        info level and above, each as the dict dbt's JSON log writes."""
        from dbt_common.events.functions import msg_to_dict

        while not self._finished:
            try:
                message = self._events.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if message is _DONE:
                self._finished = True
                self._thread.join()
                break
            if message.info.level == "debug":
                continue
            raw_event = msg_to_dict(message)
            if raw_event["info"]["level"] == "error":
                self._error_messages.append(raw_event["info"]["msg"])
            yield raw_event

    def is_successful(self) -> bool:
        for _ in self._stream_stdout():  # waits for dbt if nothing has streamed its events
            pass
        result = self._result
        return bool(getattr(result, "success", False)) and not self._error_messages

    def get_error(self) -> Exception | None:
        if self.is_successful():
            return None
        result = self._result
        error = result if isinstance(result, BaseException) else getattr(result, "exception", None)
        log_path = self.target_path.joinpath("dbt.log")
        cause = f"\n\nIt raised: {error!r}" if error is not None else ""
        return DagsterDbtCliRuntimeError(
            description=(
                f"The dbt command\n\n`{self.dbt_command}`\n\nfailed (run in the step's process)."
                f" The step's captured stdout has dbt's events; dbt's debug log is {log_path}."
                f"{cause}{self._format_error_messages()}"
            )
        )

    @property
    def dbt_command(self) -> str:
        return " ".join(["dbt", *self.args])


def _release_warehouse() -> None:
    """Close what dbt left open of the DuckDB warehouse. A dbt subprocess released the file by
    exiting; in this process dbt-duckdb keeps its database open in a class attribute after the
    command, and DuckDB refuses the export's read-only connection to a file that is open with
    another configuration. dbt's adapters are dropped (the next command registers its own)."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.adapters.factory import reset_adapters

    reset_adapters()  # closes each adapter's connections
    with DuckDBConnectionManager._LOCK:
        duckdb_environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if duckdb_environment is not None:
        duckdb_environment.close()


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block (what dbt, in this process or a subprocess started in
    it, reads), the previous values back after it."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


_SWAP = threading.Lock()


@contextmanager
def in_process_dbt() -> Iterator[None]:
    """While the block runs, `DbtCliResource.cli` builds an InProcessDbtInvocation where it
    builds a DbtCliInvocation (the one name it calls, `DbtCliInvocation.run`; a test holds that
    dagster-dbt still does: tests/test_gold.py)."""
    with _SWAP:
        original = dbt_resource_module.DbtCliInvocation
        dbt_resource_module.DbtCliInvocation = InProcessDbtInvocation
        try:
            yield
        finally:
            dbt_resource_module.DbtCliInvocation = original
