"""Online serving latency: refinery's feature server vs Feast's Python feature server.

    python3 -m uv run python bench/bench_serving.py            # ~2-4 min, loopback only

Same users, same features, same Redis: one gold-shaped feature table (the mart's 37 features and
types, USERS users, one as-of date) goes into one redis-server on a free 127.0.0.1 port, written
by refinery's sync (`refinery.online.sync`) and by `feast materialize`. Then each server is
started on its own free port (`python -m refinery.online.server --store redis://...`,
`feast serve`, one worker each) and asked for 1 and for 100 users per request by a bounded,
paced load generator: REQUESTS requests per case after WARMUP, at RATE requests/s (open-loop
schedule, one keep-alive connection, so a slow answer delays the next send but the schedule does
not drift), each case stopped after MAX_SECONDS whatever the count. Latency is measured by the
client, end to end over loopback. Before timing, the answers of both servers are compared for a
sample of users (same values).

Feast runs in bench/.venv-feast (created here with uv: feast[redis]), not in the project's env.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

BENCH_DIR = Path(__file__).resolve().parent
FEAST_VENV = BENCH_DIR / ".venv-feast"
FEAST_BIN = FEAST_VENV / "bin"
AS_OF = date(2026, 11, 30)
INT_FEATURES = [
    "events_1d",
    "events_7d",
    "events_30d",
    "views_1d",
    "views_7d",
    "views_30d",
    "clicks_1d",
    "clicks_7d",
    "clicks_30d",
    "add_to_carts_1d",
    "add_to_carts_7d",
    "add_to_carts_30d",
    "purchases_1d",
    "purchases_7d",
    "purchases_30d",
    "items_purchased_30d",
    "sessions_7d",
    "sessions_30d",
    "active_days_30d",
    "distinct_products_30d",
    "distinct_categories_30d",
    "days_since_last_event",
    "days_since_last_purchase",
    "tenure_days",
    "age",
    "marketing_opt_in",
]
FLOAT_FEATURES = [
    "spend_1d",
    "spend_7d",
    "spend_30d",
    "avg_order_value_30d",
    "view_to_cart_rate_30d",
    "cart_to_purchase_rate_30d",
    "share_mobile_30d",
]
STRING_FEATURES = ["favourite_category_30d", "main_device_30d", "plan", "country"]


def say(message: str) -> None:
    print(f"[bench_serving] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, path: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            client = RawHttp(port)
            status, _ = client.request("GET", path)
            client.close()
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port}{path}")


def feature_table(users: int, seed: int) -> pl.DataFrame:
    """A gold-shaped mart of one as-of date: the feature names and types of user_daily_features."""
    rng = random.Random(seed)
    ids = [f"user-{n:06d}" for n in range(users)]
    data: dict[str, list] = {"user_id": ids, "as_of_date": [AS_OF] * users}
    for name in INT_FEATURES:
        data[name] = [rng.randint(0, 500) if rng.random() > 0.05 else None for _ in ids]
    for name in FLOAT_FEATURES:
        data[name] = [rng.random() * 300 / 7 if rng.random() > 0.05 else None for _ in ids]
    for name in STRING_FEATURES:
        data[name] = [rng.choice(["books", "toys", "web", "ios", "DE", "free"]) for _ in ids]
    schema = {"user_id": pl.String, "as_of_date": pl.Date}
    schema |= dict.fromkeys(INT_FEATURES, pl.Int64) | dict.fromkeys(FLOAT_FEATURES, pl.Float64)
    schema |= dict.fromkeys(STRING_FEATURES, pl.String)
    return pl.DataFrame(data, schema=schema)


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client (the same for both servers; ~20 us per request)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + (body or b""))
        status = int(self.file.readline().split()[1])
        length, chunked = 0, False
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, self.file.read(length)
        parts = []
        while True:
            size = int(self.file.readline().strip(), 16)
            if size == 0:
                self.file.readline()
                return status, b"".join(parts)
            parts.append(self.file.read(size))
            self.file.readline()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def pace(port: int, make_request, requests: int, warmup: int, rate: float, max_seconds: float):
    client = RawHttp(port)
    try:
        for i in range(warmup):
            status, _ = client.request(*make_request(i))
            assert status == 200, status
        latencies = []
        interval = 1.0 / rate
        start = time.perf_counter()
        for i in range(requests):
            slot = start + i * interval
            now = time.perf_counter()
            if now < slot:
                time.sleep(slot - now)
            elif now - start > max_seconds:
                break
            sent = time.perf_counter()
            status, _ = client.request(*make_request(warmup + i))
            latencies.append(time.perf_counter() - sent)
            assert status == 200, status
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.50), 3),
        "p99_ms": round(pct(0.99), 3),
        "max_ms": round(latencies[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
    }


def ensure_feast() -> None:
    if (FEAST_BIN / "feast").exists():
        return
    say("creating bench/.venv-feast (feast[redis])")
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", str(FEAST_VENV), "--python", "3.11", "-q"], check=True)
    subprocess.run(
        [*uv, "pip", "install", "-q", "--python", str(FEAST_VENV), "feast[redis]"], check=True
    )


def setup_feast(work: Path, frame: pl.DataFrame, redis_port: int, features: list) -> Path:
    repo = work / "feast_repo"
    shutil.copytree(BENCH_DIR / "feast_repo", repo)
    (repo / "feature_store.yaml").write_text(
        "project: refinery_bench\n"
        "provider: local\n"
        f"registry: {work / 'feast_registry.db'}\n"
        "online_store:\n"
        "  type: redis\n"
        f"  connection_string: 127.0.0.1:{redis_port}\n"
        "offline_store:\n"
        "  type: file\n"
        "entity_key_serialization_version: 3\n"
    )
    ts = datetime.combine(AS_OF + timedelta(days=1), datetime.min.time(), UTC) - timedelta(
        microseconds=1
    )
    parquet = work / "features_for_feast.parquet"
    frame.drop("as_of_date").with_columns(
        pl.lit(ts).cast(pl.Datetime("us", "UTC")).alias("event_timestamp")
    ).write_parquet(parquet)
    env = {
        **os.environ,
        "FEAST_BENCH_PARQUET": str(parquet),
        "FEAST_BENCH_FEATURES": json.dumps(features),
        "FEAST_USAGE": "False",
    }
    subprocess.run(
        [str(FEAST_BIN / "feast"), "apply"],
        cwd=repo,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    start = (ts - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (ts + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    subprocess.run(
        [str(FEAST_BIN / "feast"), "materialize", start, end],
        cwd=repo,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return repo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2_000, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s per case")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="cap per case")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    from refinery.online.records import feature_schema, mart_path
    from refinery.online.store import open_store
    from refinery.online.sync import sync_dates

    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    procs: list[subprocess.Popen] = []
    results: dict = {
        "users": args.users,
        "rate_per_s": args.rate,
        "requests": args.requests,
        "warmup": args.warmup,
    }
    try:
        redis_port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    redis_bin,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(redis_port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(work),
                ],
                stdout=subprocess.DEVNULL,
            )
        )
        time.sleep(0.5)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        frame = feature_table(args.users, args.seed)
        gold_dir = work / "lake" / "gold"
        mart = mart_path(gold_dir, AS_OF)
        mart.parent.mkdir(parents=True)
        frame.write_parquet(mart)
        features = [[f["name"], f["json_type"]] for f in feature_schema(frame.schema)]
        t = time.perf_counter()
        store = open_store(redis_url, work)
        stats = sync_dates(store, gold_dir, [AS_OF], None)
        store.close()
        results["refinery_sync_seconds"] = round(time.perf_counter() - t, 2)
        say(
            f"refinery wrote {stats.users_written} users to Redis in "
            f"{results['refinery_sync_seconds']} s"
        )

        rng = random.Random(args.seed)
        ids = frame.get_column("user_id").to_list()
        one = [rng.choice(ids) for _ in range(args.requests + args.warmup)]
        hundreds = [rng.sample(ids, 100) for _ in range(200)]

        servers = {}
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "refinery.online.server",
                    "--port",
                    str(port),
                    "--store",
                    redis_url,
                    "--data-dir",
                    str(work),
                ]
            )
        )
        wait_http(port, "/health", procs[-1])
        servers["refinery"] = {
            "port": port,
            "one": lambda i: ("GET", f"/features/{one[i]}", None),
            "hundred": lambda i: (
                "POST",
                "/features",
                json.dumps({"user_ids": hundreds[i % 200]}).encode(),
            ),
        }
        feature_refs = [f"user_daily_features:{name}" for name, _ in features]
        if not args.skip_feast:
            try:
                ensure_feast()
                t = time.perf_counter()
                repo = setup_feast(work, frame, redis_port, features)
                results["feast_materialize_seconds"] = round(time.perf_counter() - t, 2)
                fport = free_port()
                procs.append(
                    subprocess.Popen(
                        [
                            str(FEAST_BIN / "feast"),
                            "serve",
                            "-h",
                            "127.0.0.1",
                            "-p",
                            str(fport),
                            "--no-access-log",
                            "-w",
                            "1",
                            "--max-requests",
                            "100000000",
                        ],
                        cwd=repo,
                        env={**os.environ, "FEAST_USAGE": "False"},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                wait_http(fport, "/health", procs[-1])

                def feast_body(users):
                    return json.dumps(
                        {"features": feature_refs, "entities": {"user_id": users}}
                    ).encode()

                servers["feast"] = {
                    "port": fport,
                    "one": lambda i: ("POST", "/get-online-features", feast_body([one[i]])),
                    "hundred": lambda i: (
                        "POST",
                        "/get-online-features",
                        feast_body(hundreds[i % 200]),
                    ),
                }
                results["feast_parity"] = compare_answers(port, fport, hundreds[0], feature_refs)
                say(f"same values from both servers for 100 users: {results['feast_parity']}")
            except (
                subprocess.CalledProcessError,
                RuntimeError,
                OSError,
                KeyError,
                ValueError,
            ) as exc:  # reported, and refinery's own numbers still come out
                results["feast_error"] = f"{type(exc).__name__}: {exc}"
                say(f"Feast could not be set up: {results['feast_error']}")
        for name, server in servers.items():
            for case, rate in (("one", args.rate), ("hundred", args.rate / 4)):
                say(f"{name}: {case} at {rate}/s")
                results[f"{name}_{case}"] = pace(
                    server["port"], server[case], args.requests, args.warmup, rate, args.max_seconds
                )
                results[f"{name}_{case}"]["rate_per_s"] = rate
                say(f"  {results[f'{name}_{case}']}")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def compare_answers(refinery_port: int, feast_port: int, users: list[str], refs: list[str]):
    """Both servers' values for the same users: the number of differing values (0 expected)."""
    a = RawHttp(refinery_port)
    _, body = a.request("POST", "/features", json.dumps({"user_ids": users}).encode())
    a.close()
    ours = json.loads(body)["results"]
    b = RawHttp(feast_port)
    _, body = b.request(
        "POST",
        "/get-online-features",
        json.dumps({"features": refs, "entities": {"user_id": users}}).encode(),
    )
    b.close()
    theirs = json.loads(body)
    names = theirs["metadata"]["feature_names"]
    columns = {name: result["values"] for name, result in zip(names, theirs["results"])}
    differing = 0
    for i, user in enumerate(users):
        assert columns["user_id"][i] == user
        for name, value in ours[i]["features"].items():
            if columns[name][i] != value:
                differing += 1
    return {"users": len(users), "differing_values": differing}


if __name__ == "__main__":
    main()
