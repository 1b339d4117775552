"""The event-id index behind silver's all-history dedupe answers exactly what the straight scan
of every earlier partition answers: for random histories, rewritten partitions, deleted or
corrupt index files, forced fingerprint collisions and a SIGKILL at each point of an update."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refinery.assets.silver import event_index as ei
from refinery.contracts.silver import EVENTS
from refinery.resources.lake import LakePaths, write_parquet_atomic

START = date(2025, 1, 1)
KILL_POINTS = [
    "index.between_run_files",
    "index.after_add",
    "index.after_merge",
    "index.before_manifest",
    "index.after_manifest",
]


def tiny_hash(ids: pl.Series) -> np.ndarray:
    """Four fingerprints for every id there is: nearly every probe is a collision."""
    return ei.fingerprints(ids) & np.uint64(3)


def frame(day: int, ids: list[str], salt: int = 0, drop: tuple = ()) -> pl.DataFrame:
    arrival = START + timedelta(days=day)
    n = len(ids)
    cols = {c.name: pl.Series(c.name, [None] * n, dtype=c.dtype) for c in EVENTS.columns}
    cols["event_id"] = pl.Series("event_id", ids, dtype=pl.String)
    cols["user_id"] = pl.Series("user_id", [f"u{salt}-{i}" for i in range(n)])
    cols["arrival_date"] = pl.Series("arrival_date", [arrival] * n, dtype=pl.Date)
    cols["_source_file"] = pl.Series("_source_file", [f"landing/{arrival}/a{salt}.jsonl"] * n)
    cols["_line"] = pl.Series("_line", list(range(1, n + 1)), dtype=pl.Int64)
    return pl.DataFrame(cols).drop(list(drop))


def write_day(paths: LakePaths, day: int, parts: list[list[str]], salt: int = 0, drop=()) -> None:
    target = paths.partition_dir("silver", "events", (START + timedelta(days=day)).isoformat())
    for old in target.glob("part-*.parquet"):
        old.unlink()
    for i, ids in enumerate(parts):
        write_parquet_atomic(frame(day, ids, salt + i, drop), target / f"part-{i}.parquet")


def same(paths, arrival, ids, **kw) -> None:
    got = ei.prior_rows(paths, arrival, ids, **kw)
    want = ei.scan_prior_rows(paths, arrival, ids)
    assert got.equals(want), (got, want)


ID = st.integers(0, 40).map(lambda i: f"ev-{i}")
DAY = st.lists(st.lists(ID, max_size=6), min_size=1, max_size=3)
OP = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 7), DAY),
    st.tuples(
        st.just("lookup"), st.integers(0, 9), st.lists(st.one_of(ID, st.none()), max_size=12)
    ),
    st.tuples(
        st.just("delete"), st.sampled_from(["manifest", "fp", "loc", "all"]), st.integers(0, 5)
    ),
    st.tuples(st.just("corrupt"), st.sampled_from(["manifest", "fp"]), st.integers(0, 5)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(OP, min_size=1, max_size=14), tiny=st.booleans(), old_schema=st.booleans())
def test_index_lookup_equals_scan(tmp_path_factory, ops, tiny, old_schema):
    paths = LakePaths(tmp_path_factory.mktemp("lake"))
    kw = {"hash_fn": tiny_hash, "hash_name": "tiny"} if tiny else {}
    write_day(paths, 0, [["ev-1", "ev-2"]], drop=("session_id",) if old_schema else ())
    for step, op in enumerate(ops):
        kind = op[0]
        root = ei.index_dir(paths)
        if kind == "write":  # a new day or a backfill rewriting an old one
            write_day(paths, op[1], op[2], salt=step)
        elif kind == "lookup":
            same(
                paths,
                START + timedelta(days=op[1]),
                pl.Series("event_id", op[2], dtype=pl.String),
                **kw,
            )
        elif root.exists():
            runs = sorted(p for p in root.iterdir() if p.name.startswith("run-"))
            if op[1] == "manifest":
                target = [root / "manifest.json"]
            elif op[1] == "all":
                target = [*runs, root / "manifest.json"]
            else:
                target = [p for p in runs if p.name.endswith(f".{op[1]}.npy")][op[2] : op[2] + 1]
            for p in target:
                if kind == "delete":
                    p.unlink(missing_ok=True)
                elif p.exists():
                    p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)])
    # and after everything, every arrival day against every id there is
    every = pl.Series("event_id", [f"ev-{i}" for i in range(41)])
    for day in range(10):
        same(paths, START + timedelta(days=day), every, **kw)


def test_index_narrows_reads_and_merges(tmp_path):
    """The index is used (only parts holding a hit are read) and tiers merge as days are added."""
    paths = LakePaths(tmp_path)
    for day in range(9):
        write_day(paths, day, [[f"ev-{day}-{i}" for i in range(50)], [f"ev-{day}-x"]])
        ei.refresh(paths)
    m = ei.load_manifest(paths)
    assert len(m["partitions"]) == 9
    assert len(m["runs"]) < 9  # four tier-0 runs became one tier-1 run, twice
    files = {
        p.name.split(".")[0] for p in ei.index_dir(paths).iterdir() if p.name.startswith("run-")
    }
    assert files == set(m["runs"])  # merged-away runs are gone
    ids = pl.Series("event_id", ["ev-3-7", "ev-8-x", "nope"])
    got = ei.prior_rows(paths, START + timedelta(days=9), ids, update=False)
    assert sorted(got["event_id"]) == ["ev-3-7", "ev-8-x"]
    assert got.equals(ei.scan_prior_rows(paths, START + timedelta(days=9), ids))
    # partitions at or after arrival never count, though the index holds them
    assert ei.prior_rows(paths, START + timedelta(days=3), ids, update=False).height == 0


def test_runs_at_the_merge_cap_stay_apart_and_lookups_stay_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(ei, "MAX_MERGED_ENTRIES", 120)  # four days of 51 ids would be 204
    paths = LakePaths(tmp_path)
    for day in range(9):
        write_day(paths, day, [[f"ev-{day}-{i}" for i in range(50)], [f"ev-{day}-x"]])
        ei.refresh(paths)
    runs = ei.load_manifest(paths)["runs"]
    assert len(runs) == 9 and all(r["tier"] == 0 for r in runs.values())  # nothing merged
    ids = pl.Series("event_id", ["ev-0-1", "ev-5-x", "ev-8-49", "nope"])
    got = ei.prior_rows(paths, START + timedelta(days=9), ids, update=False)
    assert sorted(got["event_id"]) == ["ev-0-1", "ev-5-x", "ev-8-49"]
    assert got.equals(ei.scan_prior_rows(paths, START + timedelta(days=9), ids))


def test_fingerprints_are_stable():
    """Persisted values: a change of the hash must change HASH_NAME (old indexes are rebuilt)."""
    got = ei.fingerprints(pl.Series(["ab", "cde", "", "é" * 100]))
    assert got.tolist() == [
        9163901565814428262,
        13237141236454271574,
        17665956581633026203,
        7507393006233563996,
    ]


_CHILD = """
import sys
from pathlib import Path
from refinery.assets.silver import event_index as ei
from refinery.resources.lake import LakePaths
ei.refresh(LakePaths(Path(sys.argv[1])))
"""


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_during_update_leaves_lookups_exact(tmp_path, point):
    paths = LakePaths(tmp_path)
    for day in range(4):
        write_day(paths, day, [[f"ev-{day}-{i}" for i in range(20)]])
        if day:
            ei.refresh(paths)  # three runs: days 0-1, day 2, day 3
    write_day(paths, 4, [[f"ev-4-{i}" for i in range(20)] + ["ev-0-5"]])  # a 4th live run: a merge
    write_day(paths, 1, [["ev-1-new", "ev-0-6"]], salt=9)  # and a backfill of day 1
    env = {**os.environ, "REFINERY_KILL_AT": point}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], env=env, check=False)
    assert done.returncode == -9, f"{point} was not reached"
    ids = pl.Series("event_id", ["ev-0-5", "ev-0-6", "ev-1-3", "ev-1-new", "ev-2-19", "ev-4-0"])
    for day in range(1, 7):
        arrival = START + timedelta(days=day)
        assert ei.prior_rows(paths, arrival, ids, update=False).equals(
            ei.scan_prior_rows(paths, arrival, ids)
        )
    ei.refresh(paths)  # the next update repairs it
    m = ei.load_manifest(paths)
    assert len(m["partitions"]) == 5
    files = {
        p.name.split(".")[0] for p in ei.index_dir(paths).iterdir() if p.name.startswith("run-")
    }
    assert files == set(m["runs"])
    same(paths, START + timedelta(days=6), ids, update=False)
