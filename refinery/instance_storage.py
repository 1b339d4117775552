"""The Dagster instance's SQLite storage, with its database engines kept between statements.

Dagster's SQLite storages (runs, event log, schedules) build a new SQLAlchemy engine, and open a
new SQLite connection, for every statement they run: `create_engine(..., poolclass=NullPool)`
inside each `connect()`. Writing one asset event takes four such connections (the run's shard,
the index shard twice, the tags), about 8.5 ms on this 2-core machine, and a run writes one
event per asset partition and check: 2,344 events for the demo's 69-day bronze + silver
backfill, 1,829 for its gold run. Keeping one engine per database file, with SQLAlchemy's
default connection pool, stores the same events in about 2.2 ms each (`python -m
bench.bench_instance_storage`, docs/BENCHMARKS.md).

What changes is only how connections are opened: the same files (`$DAGSTER_HOME/history/runs.db`,
`history/runs/*.db`, `schedules/schedules.db`, exactly where Dagster's own `storage: sqlite`
puts them), the same schema, the same statements, the same transactions and commits, so an
instance can switch between this class and Dagster's at any time. A pooled connection is idle
between transactions, so it holds no lock and no read snapshot.

One setting differs: the connections run with `PRAGMA synchronous=NORMAL` instead of SQLite's
default FULL. The databases are in WAL mode (Dagster sets it), where FULL fsyncs the WAL at every
commit: two fsyncs per stored event (the run's shard and the index), 3.5 s of a 30-date gold
backfill's 826 events on this machine's disk. Under NORMAL the WAL is fsynced at checkpoints
only. A commit survives the process (a SIGKILLed run worker loses nothing it committed, and the
database is never corrupted); only a power cut or kernel crash may roll back the last commits,
which SQLite documents as the trade of WAL + NORMAL. Dagster's own storage class, which keeps
FULL, reads and writes the same files.

Guards:
- a forked child never uses its parent's connections: engines are keyed by process id;
- a long-lived process (the daemon, the webserver) reading many runs keeps at most
  `MAX_SHARD_ENGINES` run-shard engines, least recently used disposed first;
- `wipe()`, which deletes shard files, disposes the engines first.

Configured in dagster_home/dagster.yaml as the instance class, whose default storage is this one
in the instance's own directory (the directory of its dagster.yaml, as Dagster's default is; a
`storage:` block would need the path spelled out or read from $DAGSTER_HOME, and an instance
opened by path with another DAGSTER_HOME exported would then write into the wrong one):

    instance_class:
      module: refinery.instance_storage
      class: RefineryInstance

A `storage:` block in dagster.yaml (PostgreSQL, say) still wins over this default.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import yaml
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

# A run worker touches one run shard; the daemon and the webserver read many. Each cached engine
# keeps up to a few idle connections (open files), so the cache is bounded.
MAX_SHARD_ENGINES = 16


class EngineCache:
    """One engine per database URL and process, least recently used evicted past `capacity`
    (engines named in `pinned` are never evicted)."""

    def __init__(self, capacity: int, pinned: frozenset[str] = frozenset(), **engine_kwargs):
        self._capacity = capacity
        self._pinned = pinned
        self._kwargs = engine_kwargs
        self._engines: OrderedDict[tuple[int, str], Engine] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> Engine:
        key = (os.getpid(), url)
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            # engines made before a fork belong to the parent: forget them without closing
            # the parent's connections (SQLAlchemy: dispose(close=False) in the child)
            for stale in [k for k in self._engines if k[0] != key[0]]:
                self._engines.pop(stale).dispose(close=False)
            engine = create_engine(url, **self._kwargs)
            if url.startswith("sqlite"):
                event.listen(engine, "connect", _commit_without_fsync)
            self._engines[key] = engine
            evictable = [k for k in self._engines if k[1] not in self._pinned and k != key]
            while len(self._engines) > self._capacity and evictable:
                self._engines.pop(evictable.pop(0)).dispose()
            return engine

    def dispose_all(self) -> None:
        with self._lock:
            while self._engines:
                _, engine = self._engines.popitem()
                engine.dispose()


def _commit_without_fsync(dbapi_connection, _record) -> None:
    """WAL + synchronous=NORMAL on each new SQLite connection (the module docstring says why)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """What Dagster's `connect()` does with its fresh engine: one connection, one transaction."""
    with engine.connect() as conn, conn.begin():
        yield conn


class _KeptEngine:
    """Dagster's single-file SQLite storages (runs, schedules) share one shape: a connection
    string and a `connect()` that makes an engine for it. This keeps that engine."""

    _conn_string: str

    def __init__(self, conn_string: str, inst_data=None):
        super().__init__(conn_string, inst_data)
        self._engines = EngineCache(1)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with _transaction(self._engines.get(self._conn_string)) as conn:
            yield conn


class PooledSqliteRunStorage(_KeptEngine, SqliteRunStorage):
    pass


class PooledSqliteScheduleStorage(_KeptEngine, SqliteScheduleStorage):
    pass


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data=None):
        # before super().__init__, which may already connect (a new index shard is reindexed)
        self._engines = EngineCache(
            MAX_SHARD_ENGINES,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        # index tables known to exist: Dagster adds tables (migrations) but never drops one, and
        # wipe() empties the index without deleting it
        self._index_tables: set[str] = set()
        super().__init__(base_dir, inst_data)
        self._engines._pinned = frozenset({self._index_url})

    @cached_property
    def _index_url(self) -> str:
        # a property: Dagster's __init__ may already store events (a new index is reindexed)
        return self.conn_string_for_shard(INDEX_SHARD_NAME)

    def has_table(self, table_name: str) -> bool:
        # Dagster's asks the index with a new engine and connection each time, and asks once or
        # twice for nearly every event stored (asset checks, partition tags): ~1.2 ms each.
        # A table found stays known; one not found is asked again (a migration may add it).
        if table_name in self._index_tables:
            return True
        engine = self._engines.get(self._index_url)
        with engine.connect() as conn:
            present = bool(engine.dialect.has_table(conn, table_name))
        if present:
            self._index_tables.add(table_name)
        return present

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's _connect, with the engine taken from the cache instead of made and disposed
        with self._db_lock:
            engine = self._engines.get(self.conn_string_for_shard(shard))
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with _transaction(engine) as conn:
                yield conn

    def wipe(self) -> None:
        # the shard files are deleted: no pooled connection may keep writing to them
        self._engines.dispose_all()
        super().wipe()


class PooledSqliteStorage(DagsterSqliteStorage):
    """`storage: sqlite`, with each storage's engines kept (see the module docstring)."""

    def __init__(self, base_dir: str, inst_data=None):
        # DagsterSqliteStorage.__init__ builds Dagster's three storages; build these instead,
        # at the same paths
        self.base_dir = base_dir
        self._run_storage = PooledSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = PooledSqliteScheduleStorage.from_local(
            _schedule_directory(base_dir)
        )
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteStorage:
        # Dagster's from_config_value names DagsterSqliteStorage itself, not cls
        return cls.from_local(inst_data=inst_data, **config_value)


class RefineryInstance(DagsterInstance):
    """Dagster's instance, whose default storage is `PooledSqliteStorage` in its directory."""

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> dict:
        defaults = dict(InstanceRef.config_defaults(base_dir))
        defaults["storage"] = ConfigurableClassData(
            __name__, PooledSqliteStorage.__name__, yaml.dump({"base_dir": base_dir})
        )
        return defaults
