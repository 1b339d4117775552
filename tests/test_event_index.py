"""The event-id index behind silver's all-history dedupe answers exactly what the straight scan
of every earlier partition answers: for random histories, rewritten partitions, deleted or
corrupt index files and row sidecars, sidecars of an older contract, forced fingerprint
collisions and a SIGKILL at each point of an update."""

from __future__ import annotations

import json
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
from refinery.assets.silver import event_index_rows as rows_io
from refinery.contracts.silver import EVENTS
from refinery.resources.lake import LakePaths, write_parquet_atomic

START = date(2025, 1, 1)
KILL_POINTS = [
    "index.sidecar_written",
    "index.between_sidecars",
    "index.after_sidecars",
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
    st.tuples(st.just("write_old"), st.integers(0, 7), DAY),  # before session_id existed
    st.tuples(
        st.just("delete"),
        st.sampled_from(["manifest", "fp", "loc", "rows", "all"]),
        st.integers(0, 5),
    ),
    st.tuples(
        st.just("corrupt"),
        st.sampled_from(["manifest", "fp", "rows", "rows_flip", "rows_flip_prelude"]),
        st.integers(0, 5),
    ),
    st.tuples(st.just("refresh"), st.just(0), st.just(0)),
)


def sidecar_files(paths: LakePaths) -> list:
    return sorted((ei.index_dir(paths) / "rows").glob("*/*.rows"))


def flip_byte(path, where: str = "block") -> None:
    """One byte changed, same size: of the first block (rows 0-63), or of the prelude (the
    blocks' schema and the constants); a CRC must catch either."""
    header_end = len(rows_io.MAGIC) + len(rows_io.schema_message(ei._schema()))
    try:
        first_block = int(rows_io.Sidecar(path, rows_io.schema_message(ei._schema()))._offsets[0])
    except rows_io.SidecarError:  # already damaged: any byte will do
        first_block = header_end
    data = bytearray(path.read_bytes())
    at = first_block + 5 if where == "block" else (header_end + first_block) // 2
    if at < len(data):
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))


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
        elif kind == "write_old":
            write_day(paths, op[1], op[2], salt=step, drop=("session_id",))
        elif kind == "refresh":
            ei.refresh(paths, **kw)
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
                target = [*runs, *sidecar_files(paths), root / "manifest.json"]
            elif op[1].startswith("rows"):
                target = sidecar_files(paths)[op[2] : op[2] + 1]
            else:
                target = [p for p in runs if p.name.endswith(f".{op[1]}.npy")][op[2] : op[2] + 1]
            for p in target:
                if kind == "delete":
                    p.unlink(missing_ok=True)
                elif op[1].startswith("rows_flip"):
                    flip_byte(p, "prelude" if op[1].endswith("prelude") else "block")
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


class PartReads:
    """Which silver parts a lookup read whole (wraps the real `_read_parts`)."""

    def __init__(self, monkeypatch):
        self.parts: list = []
        real = ei._read_parts

        def spy(parts, wanted):
            self.parts += [p for _, _, p in parts]
            return real(parts, wanted)

        monkeypatch.setattr(ei, "_read_parts", spy)


def test_hits_are_read_from_sidecars_and_bad_ones_fall_back(tmp_path, monkeypatch):
    """Hits come from the row sidecars (no silver part is read whole); a deleted, truncated,
    bit-flipped or unknown sidecar makes the lookup read that part the old way, still exactly,
    and the next refresh writes it again."""
    paths = LakePaths(tmp_path)
    for day in range(3):
        # three parts, 300 rows each: several blocks per part; duplicated ids inside a day
        write_day(paths, day, [[f"ev-{day}-{p}-{i % 290}" for i in range(300)] for p in range(3)])
    ei.refresh(paths)
    ids = pl.Series(
        "event_id",
        [f"ev-{d}-{p}-{i}" for d in range(3) for p in range(3) for i in (0, 7, 150, 289)]
        + ["nope"],
    )
    arrival = START + timedelta(days=3)
    reads = PartReads(monkeypatch)
    got = ei.prior_rows(paths, arrival, ids, update=False)
    assert got.height == 3 * 3 * 6  # ids 0 and 7 twice each (rows i and i + 290)
    assert got.equals(ei.scan_prior_rows(paths, arrival, ids))
    assert reads.parts == []
    files = sidecar_files(paths)
    assert len(files) == 9
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes()[:100])
    flip_byte(files[2])
    m = ei.load_manifest(paths)
    entry = next(iter(m["partitions"].values()))
    bogus = ei.index_dir(paths) / entry["rows"][0]  # part-0 of day 0: of an older contract
    older = {k: v for k, v in ei._schema().items() if k != "device"}
    rows_io.write_rows(bogus, pl.DataFrame(schema=older), older)
    same(paths, arrival, ids, update=False)
    assert len(reads.parts) == 3
    stats = ei.refresh(paths)
    assert sorted(stats["sidecars"]) == ["2025-01-01"]  # the three bad ones were all of day 0
    reads.parts.clear()
    same(paths, arrival, ids, update=False)
    assert reads.parts == []
    assert len(sidecar_files(paths)) == 9  # the replaced ones are gone


def test_a_column_added_to_the_contract_makes_sidecars_unknown_until_rewritten(
    tmp_path, monkeypatch
):
    paths = LakePaths(tmp_path)
    for day in range(2):
        write_day(paths, day, [[f"ev-{day}-{i}" for i in range(70)]])
    ei.refresh(paths)
    ids = pl.Series("event_id", ["ev-0-3", "ev-1-69", "ev-1-64"])
    arrival = START + timedelta(days=2)
    wider = {**ei._schema(), "channel": pl.String}
    monkeypatch.setattr(ei, "_schema", lambda: wider)
    reads = PartReads(monkeypatch)
    got = ei.prior_rows(paths, arrival, ids, update=False)
    assert "channel" in got.columns and got.height == 3
    assert got.equals(ei.scan_prior_rows(paths, arrival, ids))
    assert len(reads.parts) == 2  # both sidecars are of the older contract
    assert sorted(ei.refresh(paths)["sidecars"]) == ["2025-01-01", "2025-01-02"]
    reads.parts.clear()
    same(paths, arrival, ids, update=False)
    assert reads.parts == []


def test_missing_sidecars_are_rewritten_newest_first_a_few_per_refresh(tmp_path, monkeypatch):
    """A lake indexed before sidecars existed (or that lost them) gets them back over several
    refreshes, newest day first; lookups are exact at every step."""
    monkeypatch.setattr(ei, "SIDECAR_REPAIRS", 2)
    paths = LakePaths(tmp_path)
    for day in range(5):
        write_day(paths, day, [[f"ev-{day}-{i}" for i in range(10)]])
    ei.refresh(paths)
    m = ei.load_manifest(paths)
    for e in m["partitions"].values():  # as an index written before sidecars: no such fields
        del e["rows"], e["part_rows"]
    (ei.index_dir(paths) / "manifest.json").write_text(json.dumps(m))
    ids = pl.Series("event_id", [f"ev-{d}-3" for d in range(5)])
    arrival = START + timedelta(days=5)
    repaired = []
    for _ in range(3):
        same(paths, arrival, ids, update=False)
        repaired.append(ei.refresh(paths)["sidecars"])
    assert repaired == [
        ["2025-01-05", "2025-01-04"],
        ["2025-01-03", "2025-01-02"],
        ["2025-01-01"],
    ]
    assert ei.refresh(paths)["sidecars"] == []
    reads = PartReads(monkeypatch)
    same(paths, arrival, ids, update=False)
    assert reads.parts == []


def test_a_merge_drops_the_stale_entries_of_a_rewritten_partition(tmp_path, monkeypatch):
    """A backfill re-indexes a day in a new run; when the old run and the new one are merged
    together, only the new entries of that day survive (the old ones would point at rows of the
    rewritten part)."""
    paths = LakePaths(tmp_path)
    write_day(paths, 0, [[f"ev-0-{i}" for i in range(30)]])
    write_day(paths, 1, [[f"ev-1-{i}" for i in range(30)]])
    ei.refresh(paths)  # one run: days 0 and 1
    write_day(paths, 1, [["ev-1-new"]], salt=5)  # backfill: day 1 now holds one row
    ei.refresh(paths)
    for day in (2, 3):
        write_day(paths, day, [[f"ev-{day}-{i}" for i in range(10)]])
        ei.refresh(paths)  # the fourth live run: all four merge
    m = ei.load_manifest(paths)
    assert len(m["runs"]) == 1
    assert sum(r["entries"] for r in m["runs"].values()) == 30 + 1 + 10 + 10
    ids = pl.Series("event_id", ["ev-1-3", "ev-1-new", "ev-0-29"])
    reads = PartReads(monkeypatch)
    same(paths, START + timedelta(days=4), ids, update=False)
    assert reads.parts == []


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
from refinery.assets.silver import event_index_rows as rows_io
from refinery.resources.lake import LakePaths
ei.refresh(LakePaths(Path(sys.argv[1])))
"""


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_during_update_leaves_lookups_exact(tmp_path, monkeypatch, point):
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
    # every sidecar on disk is one the manifest names, and no temp file is left
    named = {n for e in m["partitions"].values() for n in e["rows"]}
    on_disk = {
        str(p.relative_to(ei.index_dir(paths)))
        for p in (ei.index_dir(paths) / "rows").rglob("*")
        if p.is_file()
    }
    assert on_disk == named and len(named) == 5
    reads = PartReads(monkeypatch)
    same(paths, START + timedelta(days=6), ids, update=False)
    assert reads.parts == []


def test_columns_constant_in_a_part_are_kept_once_and_read_back(tmp_path, monkeypatch):
    """A part's arrival date, source file and absent columns are stored once, not per block;
    parts of different layouts (a one-row part: every column but the key constant) decode in
    one lookup, each with its own constants, exactly as the straight scan reads them."""
    paths = LakePaths(tmp_path)
    write_day(paths, 0, [[f"ev-a{i}" for i in range(130)], ["ev-lone"]])
    write_day(paths, 1, [[f"ev-b{i}" for i in range(70)]], salt=7)
    ei.refresh(paths)
    header = rows_io.schema_message(ei._schema())
    layouts = {f.parent.name + f.name[:6]: rows_io.Sidecar(f, header) for f in sidecar_files(paths)}
    for sidecar in layouts.values():
        kept_once = set(sidecar.constants.column_names)
        assert {"arrival_date", "_source_file", "session_id"} <= kept_once
        assert "event_id" not in kept_once and "_line" not in kept_once or sidecar.rows == 1
    assert sorted(s.rows for s in layouts.values()) == [1, 70, 130]
    ids = pl.Series("event_id", ["ev-a0", "ev-a129", "ev-lone", "ev-b5", "ev-b69", "ev-zz"])
    reads = PartReads(monkeypatch)
    same(paths, START + timedelta(days=2), ids, update=False)
    assert reads.parts == []
