"""A gold lake for the online tests: gold_fixtures' story plus a crowd of random users, through
real dbt (one `dbt build`), and a real redis-server on a free loopback port.

The crowd makes the store non-trivial: ~150 users active on random days with amounts in cents
(sums of such floats are not exact in binary, which is what the parity check must not blur).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

from tests.gold_fixtures import (  # noqa: F401 - range_tags: test_online imports it from here
    FIRST_DAY,
    _event,
    at,
    range_tags,
    run_gold,
    write_silver,
)

CROWD = 150
QUIET_FROM = 110  # crowd users from c110 on act only in the first 5 days: gone from gold later
CROWD_LAST_DAY = date(2025, 2, 10)
KINDS = ("view", "view", "view", "click", "add_to_cart", "purchase")
DEVICES = ("ios", "android", "web")


def crowd_events(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    events = []
    day = FIRST_DAY
    while day <= CROWD_LAST_DAY:
        for n in range(CROWD):
            if rng.random() > 0.3 or (n >= QUIET_FROM and day > FIRST_DAY + timedelta(days=4)):
                continue
            user = f"c{n:03d}"
            for k in range(rng.randint(1, 4)):
                kind = rng.choice(KINDS)
                amount = round(rng.uniform(1, 80), 2) if kind == "purchase" else None
                events.append(
                    _event(
                        f"{user}-{day}-{k}",
                        user,
                        kind,
                        at(day, rng.randint(0, 23), k),
                        day,
                        rng.choice(("p1", "p2", "p3")),
                        amount,
                        1,
                        rng.choice(DEVICES),
                        f"{user}-{day}",
                    )
                )
        day += timedelta(days=1)
    return events


def crowd_users(seed: int = 7) -> list[dict]:
    rng = random.Random(seed + 1)
    return [
        {
            "user_id": f"c{n:03d}",
            "signup_date": date(2024, 1, 1) + timedelta(days=rng.randint(0, 300)),
            "country": rng.choice(("DE", "FR", "US")),
            "birth_year": rng.randint(1950, 2005),
            "marketing_opt_in": rng.random() < 0.5,
            "plan": rng.choice(("free", "plus", "pro")),
        }
        for n in range(CROWD)
    ]


def write_crowd_silver(root: Path, until: date = CROWD_LAST_DAY) -> None:
    """gold_fixtures' scenario plus the crowd of random users and their events."""
    write_silver(root, until, extra_events=crowd_events(), extra_users=crowd_users())


def build_gold(root: Path, first: date, last: date, monkeypatch) -> None:
    """Real dbt over the knowledge dates (gold reads the data root from the lake resource)."""
    monkeypatch.setenv("REFINERY_DATA_DIR", str(root))  # the server module's default data root
    assert run_gold(root, first, last).success


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real redis-server on 127.0.0.1 and a free port, no persistence, in a temp dir."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
