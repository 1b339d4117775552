"""Materializing a day's changed users into the online store at 100k users (1M events/day).

Writes two as-of dates of a `user_daily_features`-shaped mart (`--users` rows each, the mart's
feature columns: counts, spend, rates, shares, strings), then applies them with the asset's own
function (`refinery.online.sync.sync_dates`) to the SQLite store and to a real redis-server on a
free loopback port: day 1 writes every user, day 2 changes every user's values (as a day of 1M
events does: recency and tenure move for all active users), and a rerun of day 2 writes nothing.
Each store runs in a fresh child process so its peak memory (ru_maxrss) is its own.

    uv run python -m bench.bench_online_sync --users 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

DAY = date(2026, 10, 1)


def mart(users: int, as_of: date, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    counts = {
        f"{k}_{w}d": rng.integers(0, 40, users)
        for k in ("events", "views", "clicks", "carts", "purchases")
        for w in (1, 7, 30)
    }
    money = {f"spend_{w}d": np.round(rng.gamma(2, 30, users), 2) for w in (1, 7, 30)}
    rates = {f"{k}_rate_30d": rng.random(users) for k in ("click", "cart", "purchase")}
    shares = {f"share_{d}_30d": rng.random(users) for d in ("web", "ios", "android")}
    return pl.DataFrame(
        {
            "user_id": [f"u{i:07d}" for i in range(users)],
            "as_of_date": pl.Series([as_of] * users, dtype=pl.Date),
            **counts,
            **money,
            **rates,
            **shares,
            "avg_order_value_30d": np.round(rng.gamma(2, 20, users), 6),
            "days_since_last_event": rng.integers(0, 30, users),
            "tenure_days": rng.integers(0, 900, users),
            "favourite_category": pl.Series(
                rng.choice(["toys", "books", "garden", ""], users)
            ).replace("", None),
            "plan": rng.choice(["free", "plus", "pro"], users),
            "country": rng.choice(["DE", "US", "FR"], users),
        }
    )


def write_gold(root: Path, users: int) -> Path:
    from refinery.online.records import mart_path

    gold = root / "lake" / "gold"
    for offset in range(2):
        path = mart_path(gold, DAY + timedelta(days=offset))
        path.parent.mkdir(parents=True, exist_ok=True)
        mart(users, DAY + timedelta(days=offset), seed=offset).write_parquet(path)
    return gold


def child(url: str, root: str) -> None:
    from refinery.online.store import open_store
    from refinery.online.sync import sync_dates

    gold = Path(root) / "lake" / "gold"
    store = open_store(url, Path(root))
    out = {}
    for name, day in (
        ("day 1 (all new)", DAY),
        ("day 2 (all changed)", DAY + timedelta(days=1)),
        ("day 2 again (rerun)", DAY + timedelta(days=1)),
    ):
        started = time.perf_counter()
        stats = sync_dates(store, gold, [day], version=None)
        out[name] = {
            "seconds": round(time.perf_counter() - started, 2),
            "written": stats.users_written,
        }
    out["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="online-sync-"))
    write_gold(work, args.users)
    stores = {"sqlite": "sqlite"}
    redis = None
    if shutil.which("redis-server"):
        port = free_port()
        redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        stores["redis"] = f"redis://127.0.0.1:{port}/0"
    try:
        print(f"{args.users} users per as-of date, mart of {len(mart(1, DAY, 0).columns)} columns")
        for name, url in stores.items():
            out = subprocess.check_output(
                [sys.executable, "-m", "bench.bench_online_sync", "--child", url, str(work)],
                text=True,
            )
            result = json.loads(out.strip().splitlines()[-1])
            peak = result.pop("peak_mb")
            steps = ", ".join(
                f"{k}: {v['seconds']} s ({v['written']} written)" for k, v in result.items()
            )
            print(f"  {name:6s} {steps}; peak {peak} MB")
    finally:
        if redis:
            redis.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
