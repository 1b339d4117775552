"""Run bench/floor.sql on a landing folder: the engine floor, timed from inside the process.

    python -m bench.floor --landing DIR --out DIR --min-date D --max-date D [--json OUT]

Writes OUT/user_daily_features.parquet and OUT/training_examples.parquet. `seconds` covers
connecting, reading the landing files, computing and writing; the parent reads peak RSS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FLOOR_SQL = Path(__file__).with_name("floor.sql")


def render_floor_sql(
    landing: Path, out_dir: Path, min_date: str, max_date: str, memory_limit: str = "6GB"
) -> str:
    """floor.sql with its placeholders filled; the same memory cap refinery's dbt profile uses."""
    values = {
        "landing": str(Path(landing).resolve()),
        "out_dir": str(Path(out_dir).resolve()),
        "min_date": min_date,
        "max_date": max_date,
        "memory_limit": memory_limit,
    }
    sql = FLOOR_SQL.read_text()
    for name, value in values.items():
        sql = sql.replace("{{" + name + "}}", value)
    return sql


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--min-date", required=True)
    parser.add_argument("--max-date", required=True)
    parser.add_argument("--json")
    args = parser.parse_args()
    started = time.perf_counter()
    import duckdb

    import_seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    sql = render_floor_sql(args.landing, args.out, args.min_date, args.max_date)
    started = time.perf_counter()
    with duckdb.connect() as con:
        con.execute(sql)
    result = {
        "stage": "floor",
        "import_seconds": round(import_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
    text = json.dumps(result)
    if args.json:
        Path(args.json).write_text(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
