"""The instance's pooled SQLite storage (refinery/instance_storage.py) stores what Dagster's own
does, in the same files, across processes, forks, wipes and many runs."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
    asset_check,
)

from refinery.instance_storage import (
    MAX_SHARD_ENGINES,
    EngineCache,
    PooledSqliteEventLogStorage,
    PooledSqliteRunStorage,
    PooledSqliteScheduleStorage,
)
from tests.conftest import PROJECT_DAGSTER_YAML

PARTS = StaticPartitionsDefinition([f"p{i}" for i in range(5)])


@asset(partitions_def=PARTS)
def thing(context) -> MaterializeResult:
    return MaterializeResult(metadata={"partition": context.partition_key})


@asset_check(asset=thing)
def thing_has_partition() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


def _homes(tmp_path: Path) -> tuple[Path, Path]:
    """The repo's dagster.yaml (pooled storage), and the same without its storage block
    (Dagster's own SQLite storage), both over one directory layout."""
    config = yaml.safe_load(PROJECT_DAGSTER_YAML.read_text())
    assert config["instance_class"]["class"] == "RefineryInstance"
    pooled = tmp_path / "home"
    pooled.mkdir()
    (pooled / "dagster.yaml").write_text(yaml.safe_dump(config))
    del config["instance_class"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(config))
    return pooled, plain


def _as_dagster_would(home: Path, plain: Path) -> DagsterInstance:
    """The same directory opened with Dagster's own storage."""
    (home / "dagster.yaml").write_text(plain.read_text())
    return DagsterInstance.from_config(str(home))


def _snapshot(instance: DagsterInstance) -> dict:
    runs = instance.get_runs()
    return {
        "runs": sorted((r.run_id, r.status.value) for r in runs),
        "events": sorted(
            (e.run_id, e.dagster_event.event_type_value if e.dagster_event else "log", e.message)
            for r in runs
            for e in instance.all_logs(r.run_id)
        ),
        "partitions": sorted(instance.get_materialized_partitions(AssetKey("thing"))),
        "runless": [
            r.asset_materialization.metadata["n"].value
            for r in instance.fetch_materializations(AssetKey("runless"), limit=100).records
        ],
    }


def test_pooled_storage_writes_what_dagsters_own_storage_reads(monkeypatch, tmp_path):
    home, plain = _homes(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    for storage, cls in (
        (instance.run_storage, PooledSqliteRunStorage),
        (instance.event_log_storage, PooledSqliteEventLogStorage),
        (instance.schedule_storage, PooledSqliteScheduleStorage),
    ):
        assert isinstance(storage, cls)
    job = Definitions(assets=[thing]).resolve_implicit_global_asset_job_def()
    for key in PARTS.get_partition_keys():
        assert job.execute_in_process(instance=instance, partition_key=key).success
    for n in range(20):
        instance.report_runless_asset_event(AssetMaterialization("runless", metadata={"n": n}))
    written = _snapshot(instance)
    assert written["partitions"] == sorted(PARTS.get_partition_keys())
    assert len(written["runs"]) == 5 and len(written["runless"]) == 20
    # the files are Dagster's own, where `storage: sqlite` keeps them
    assert (home / "history" / "runs.db").exists()
    assert (home / "history" / "runs" / "index.db").exists()
    assert (home / "schedules" / "schedules.db").exists()
    assert _snapshot(_as_dagster_would(home, plain)) == written


def _report_events(home: str, name: str, n: int) -> None:
    os.environ["DAGSTER_HOME"] = home
    instance = DagsterInstance.get()
    for i in range(n):
        instance.report_runless_asset_event(AssetMaterialization(name, metadata={"n": i}))


def test_processes_writing_at_once_lose_no_event(monkeypatch, tmp_path):
    """Two processes with their own pools write into one instance at the same time (the daemon
    and a run worker do): every event is stored, none is refused as locked."""
    home, _ = _homes(tmp_path)
    script = textwrap.dedent(
        """
        import sys
        from tests.test_instance_storage import _report_events
        _report_events(sys.argv[1], sys.argv[2], 150)
        """
    )
    # the instance exists before its writers start, as under make demo (creating the same new
    # instance from two processes at once races in Dagster's own schema stamping)
    DagsterInstance.from_config(str(home))
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(home), f"w{i}"], env=env)
        for i in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    for name in ("w0", "w1"):
        records = instance.fetch_materializations(AssetKey(name), limit=1000).records
        assert sorted(r.asset_materialization.metadata["n"].value for r in records) == list(
            range(150)
        )


def test_a_sigkilled_writer_loses_nothing_it_committed(monkeypatch, tmp_path):
    """The pooled connections commit without fsync (WAL + synchronous=NORMAL): a run worker
    SIGKILLed right after its commits, before any checkpoint or clean close, loses none of them,
    and Dagster's own storage reads them back."""
    home, plain = _homes(tmp_path)
    DagsterInstance.from_config(str(home))
    script = textwrap.dedent(
        """
        import os, signal, sys
        from dagster import DagsterInstance
        from tests.test_instance_storage import _report_events
        _report_events(sys.argv[1], "killed", 40)
        storage = DagsterInstance.get().event_log_storage
        with storage._connect("index") as conn:
            print(conn.exec_driver_sql("PRAGMA synchronous").scalar(),
                  conn.exec_driver_sql("PRAGMA journal_mode").scalar(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(home)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "wal"]  # NORMAL, in WAL mode
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = _as_dagster_would(home, plain)
    records = instance.fetch_materializations(AssetKey("killed"), limit=100).records
    assert sorted(r.asset_materialization.metadata["n"].value for r in records) == list(range(40))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_does_not_use_its_parents_connections(monkeypatch, tmp_path):
    home, _ = _homes(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    instance.report_runless_asset_event(AssetMaterialization("from_parent"))  # engines exist
    storage = instance.event_log_storage
    parents = dict(storage._engines._engines)
    assert parents
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    # the child uses the inherited instance itself: it must build engines of its own
    child = ctx.Process(target=_forked_write, args=(instance, queue))
    child.start()
    assert queue.get(timeout=120) == "ok"
    child.join(timeout=60)
    assert child.exitcode == 0
    # the parent's pooled connections still work after the child exited
    instance.report_runless_asset_event(AssetMaterialization("from_parent"))
    assert storage._engines._engines.keys() == parents.keys()
    assert len(instance.fetch_materializations(AssetKey("from_parent"), limit=10).records) == 2
    assert len(instance.fetch_materializations(AssetKey("forked"), limit=10).records) == 1


def _forked_write(instance, queue) -> None:
    try:
        instance.report_runless_asset_event(AssetMaterialization("forked"))
        engines = instance.event_log_storage._engines._engines
        assert engines and all(pid == os.getpid() for pid, _ in engines), list(engines)
        queue.put("ok")
    except Exception as error:  # noqa: BLE001 - the parent asserts on what it was
        queue.put(repr(error))


def test_a_long_lived_reader_keeps_a_bounded_number_of_engines(monkeypatch, tmp_path):
    home, _ = _homes(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    job = Definitions(assets=[thing]).resolve_implicit_global_asset_job_def()
    run_ids = []
    for i in range(MAX_SHARD_ENGINES + 4):
        result = job.execute_in_process(instance=instance, partition_key=f"p{i % 5}")
        run_ids.append(result.run_id)
    reader = DagsterInstance.from_config(str(home))
    assert reader.get_materialized_partitions(AssetKey("thing"))  # the index shard first
    for run_id in run_ids:  # what the webserver does as a user opens run after run
        assert reader.all_logs(run_id)
    engines = reader.event_log_storage._engines._engines
    assert len(engines) <= MAX_SHARD_ENGINES
    index = reader.event_log_storage.conn_string_for_shard("index")
    assert any(url == index for _, url in engines)  # the index shard is never evicted
    assert reader.all_logs(run_ids[0])  # an evicted shard is simply opened again


def test_wipe_drops_the_connections_to_the_files_it_deletes(monkeypatch, tmp_path):
    home, plain = _homes(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    job = Definitions(assets=[thing]).resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, partition_key="p0").success
    instance.wipe()
    assert job.execute_in_process(instance=instance, partition_key="p1").success
    assert sorted(instance.get_materialized_partitions(AssetKey("thing"))) == ["p1"]
    assert sorted(
        _as_dagster_would(home, plain).get_materialized_partitions(AssetKey("thing"))
    ) == ["p1"]


def test_engine_cache_evicts_least_recently_used_but_never_pinned(tmp_path):
    urls = [f"sqlite:///{tmp_path}/{i}.db" for i in range(5)]
    cache = EngineCache(3, pinned=frozenset({urls[0]}))
    first = cache.get(urls[0])
    for url in urls[1:]:
        cache.get(url)
    kept = [url for _, url in cache._engines]
    assert len(kept) == 3 and urls[0] in kept and kept[-2:] == urls[3:]
    assert cache.get(urls[0]) is first
    cache.dispose_all()
    assert not cache._engines


def test_an_instance_opened_by_path_stores_in_its_own_directory(monkeypatch, tmp_path):
    """The storage lives where the instance's dagster.yaml is, whatever DAGSTER_HOME says."""
    home, _ = _homes(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(other))
    instance = DagsterInstance.from_config(str(home))
    assert type(instance).__name__ == "RefineryInstance"
    instance.report_runless_asset_event(AssetMaterialization("here"))
    assert (home / "history" / "runs" / "index.db").exists()
    assert not any(other.iterdir())
    monkeypatch.delenv("DAGSTER_HOME")
    again = DagsterInstance.from_config(str(home))
    assert len(again.fetch_materializations(AssetKey("here"), limit=5).records) == 1


def test_has_table_asks_the_kept_engine_and_forgets_no_table_added_later(monkeypatch, tmp_path):
    """Dagster's has_table makes an engine per call (once or twice per stored event); the pooled
    one answers the same from the kept engine, remembers only tables found, and sees one added
    after it said no."""
    import sqlalchemy
    from dagster._core.storage.event_log.sqlite import sqlite_event_log

    home, _ = _homes(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.from_config(str(home))
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    dagsters = sqlite_event_log.SqliteEventLogStorage.has_table
    for table in ("asset_check_executions", "asset_event_tags", "event_logs", "no_such_table"):
        assert storage.has_table(table) is dagsters(storage, table), table

    made = []
    real_create_engine = sqlalchemy.create_engine

    def counting(*args, **kwargs):
        made.append(args[0])
        return real_create_engine(*args, **kwargs)

    monkeypatch.setattr(sqlite_event_log, "create_engine", counting)
    monkeypatch.setattr("refinery.instance_storage.create_engine", counting)
    job = Definitions(
        assets=[thing], asset_checks=[thing_has_partition]
    ).resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, partition_key="p0").success
    made.clear()
    assert job.execute_in_process(instance=instance, partition_key="p1").success
    index_url = storage.conn_string_for_shard(sqlite_event_log.INDEX_SHARD_NAME)
    assert index_url not in made  # the run's own shard is a new file: one engine for it
    assert sorted(instance.get_materialized_partitions(AssetKey("thing"))) == ["p0", "p1"]
    checks = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey("thing"), "thing_has_partition"), limit=10
    )
    assert len(checks) == 2

    assert storage.has_table("added_later") is False
    index = storage._engines.get(index_url)
    with index.begin() as conn:
        conn.execute(sqlalchemy.text("create table added_later (x integer)"))
    assert storage.has_table("added_later") is True
    assert storage.has_table("no_such_table") is False
