"""Run the engine floor on a landing folder, timed from inside the process.

    python -m bench.floor --landing DIR --out DIR --min-date D --max-date D
        [--algorithm preaggregated|naive] [--json OUT]

`preaggregated` (bench/floor_fast.sql, the default) is the honest floor: events aggregated per
(user, day, arrival) and per (user, key, day, arrival), each row's contribution turned into +x/-x
deltas on the as-of dates where it starts and stops counting, and running sums per user; nothing
is paired with the as-of dates except the output's own rows. `naive` (bench/floor.sql) is the SQL a
team writes first: every event joined to every as-of date whose window holds it, in passes of
--dates-per-pass dates so it fits the memory cap.

Writes OUT/user_daily_features.parquet and OUT/training_examples.parquet. `seconds` covers
connecting, reading the landing files, computing and writing; the parent reads peak RSS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path

FLOOR_SQL = Path(__file__).with_name("floor.sql")
FAST_FLOOR_SQL = Path(__file__).with_name("floor_fast.sql")
ALGORITHMS = ("preaggregated", "naive")
SOURCES = ("landing", "silver")
BEGIN_LANDING, END_LANDING = "-- {{begin landing}}", "-- {{end landing}}"
# --source silver: the same three tables from silver's typed, deduplicated Parquet, which is what
# refinery's gold reads (a floor for gold alone, without parsing and validating JSON)
SILVER_TABLES = """
create temp table events as
select
    event_id, user_id, event_type, cast(timezone('UTC', event_time) as date) as event_date,
    product_id, amount, quantity, device, session_id, cast(date as date) as arrival_date
from read_parquet('{{silver}}/events/date=*/part-*.parquet', hive_partitioning = true,
    hive_types = {'date': 'date'})
where cast(date as date) <= date '{{max_date}}';

create temp table users as
select user_id, signup_date, country, birth_year, marketing_opt_in, plan,
    cast(date as date) as snapshot_date
from read_parquet('{{silver}}/users/date=*/part-*.parquet', hive_partitioning = true,
    hive_types = {'date': 'date'});

create temp table products as
select product_id, category, cast(date as date) as snapshot_date
from read_parquet('{{silver}}/products/date=*/part-*.parquet', hive_partitioning = true,
    hive_types = {'date': 'date'});
"""
BEGIN_PASS, END_PASS = "-- {{begin pass}}", "-- {{end pass}}"
LABEL_DELAY_DAYS = 10  # label horizon 7 + allowed lateness 3 (dbt_project.yml)
# As-of dates per pass of the naive SQL: 7 fit the 6 GB cap at 1M events/day (the size the old
# events x dates gold was calibrated on); all 40 at once did not.
DATES_PER_PASS = 7


def fill(sql: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        sql = sql.replace("{{" + name + "}}", value)
    return sql


def as_of_dates(min_date: date, max_date: date) -> list[date]:
    """The as-of dates the floor's outputs need, in order: features for min..max, and features
    for min-10..max-10, which the training examples join to their labels. Nothing in between:
    for one new day on 30 of history that is 2 dates, where a continuous range would be 11.
    Deliberately the floor's own (it imports nothing of refinery): the equality check reads
    refinery's marts at refinery's own dates (as_of_dates_for), so a divergence fails there."""
    if max_date < min_date:
        raise ValueError(f"max date {max_date} is before min date {min_date}")
    span = (max_date - min_date).days
    delay = timedelta(days=LABEL_DELAY_DAYS)
    needed = {min_date + timedelta(days=i) for i in range(span + 1)}
    needed |= {d - delay for d in needed}
    return sorted(needed)


def render_floor_sql(
    landing: Path,
    out_dir: Path,
    min_date: str,
    max_date: str,
    memory_limit: str = "6GB",
    dates_per_pass: int = DATES_PER_PASS,
    algorithm: str = "naive",
    source: str = "landing",
) -> str:
    """floor.sql with its placeholders filled and its per-pass block repeated for each run of
    `dates_per_pass` as-of dates. The floor keeps 6GB, twice refinery's default cap: the M and L
    floor figures were measured with it, and more memory can only favour the floor."""
    if dates_per_pass < 1:
        raise ValueError(f"dates_per_pass must be >= 1, got {dates_per_pass}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    dates = as_of_dates(date.fromisoformat(min_date), date.fromisoformat(max_date))
    if algorithm == "preaggregated":
        head, block, tail = FAST_FLOOR_SQL.read_text(), "", ""
        if source == "silver":
            before, rest = head.split(BEGIN_LANDING, 1)
            head = before + SILVER_TABLES + rest.split(END_LANDING, 1)[1]
    elif source != "landing":
        raise ValueError("the naive floor reads landing files only")
    else:
        head, rest = FLOOR_SQL.read_text().split(BEGIN_PASS, 1)
        block, tail = rest.split(END_PASS, 1)
    passes = []
    for start in range(0, len(dates) if block else 0, dates_per_pass):
        chunk = dates[start : start + dates_per_pass]
        into = "insert into features" if passes else "create temp table features as"
        values = {"pass_first": str(chunk[0]), "pass_last": str(chunk[-1]), "features_into": into}
        passes.append(fill(block, values))
    values = {
        "as_of_dates": ", ".join(f"date '{d}'" for d in dates),
        "first_as_of": str(dates[0]),
        "last_as_of": str(dates[-1]),
        "landing": str(Path(landing).resolve()),
        "silver": str(Path(landing).resolve().parent / "lake" / "silver"),
        "out_dir": str(Path(out_dir).resolve()),
        "min_date": min_date,
        "max_date": max_date,
        "memory_limit": memory_limit,
        "dates_per_pass": str(dates_per_pass),
    }
    return fill(head + "".join(passes) + tail, values)


def statement_label(query: str) -> str:
    """The first line of a statement that is not a comment, for progress and failure reports."""
    for line in query.splitlines():
        line = line.strip()
        if line and not line.startswith("--"):
            return line[:100]
    return query.strip()[:100]


def run_sql(sql: str) -> list[dict]:
    """Execute the rendered script statement by statement on a fresh in-memory DuckDB; return
    each statement's label and seconds."""
    import duckdb

    statements = []
    with duckdb.connect() as con:
        for statement in duckdb.extract_statements(sql):
            label = statement_label(statement.query)
            begun = time.perf_counter()
            try:
                con.execute(statement.query)
            except duckdb.Error:
                # which statement gave out is what a reader of an out-of-memory needs to know
                sys.stderr.write(
                    f"floor: statement {len(statements) + 1} failed after "
                    f"{time.perf_counter() - begun:.1f} s: {label}\n"
                )
                raise
            statements.append(
                {"statement": label, "seconds": round(time.perf_counter() - begun, 3)}
            )
    return statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--min-date", required=True)
    parser.add_argument("--max-date", required=True)
    parser.add_argument("--dates-per-pass", type=int, default=DATES_PER_PASS)
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="preaggregated")
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="landing",
        help="silver: read the lake's silver Parquet beside --landing (DATA/lake/silver)",
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    started = time.perf_counter()
    import duckdb  # noqa: F401 - timed apart: the import is not the floor's work

    import_seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    sql = render_floor_sql(
        args.landing,
        args.out,
        args.min_date,
        args.max_date,
        dates_per_pass=args.dates_per_pass,
        algorithm=args.algorithm,
        source=args.source,
    )
    started = time.perf_counter()
    statements = run_sql(sql)
    result = {
        "stage": "floor",
        "algorithm": args.algorithm,
        "source": args.source,
        "import_seconds": round(import_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "statements": statements,
    }
    text = json.dumps(result)
    if args.json:
        Path(args.json).write_text(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
