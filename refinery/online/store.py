"""Where online records live: an embedded SQLite file (default) or Redis (production).

Both hold, per user, the as-of date and the JSON body of `records.encode_records`, plus a digest
per user (what makes reruns write nothing) and a small meta map (watermark, training-set
version, feature schema, last update). A run's writes are one transaction in either store:

- SQLite: one `BEGIN IMMEDIATE ... COMMIT` in WAL mode; readers keep reading the last committed
  state until the commit, a killed writer leaves the journal rolled back.
- Redis: one MULTI/EXEC (redis-py's transactional pipeline, sent only at `execute`): Redis runs
  the queued commands as one unit, no reader sees a part of them, and a writer killed before
  EXEC sends nothing (commands are buffered client-side; a connection closed mid-MULTI is
  discarded by the server). Incremental writes make a generation copy + pointer flip the costlier
  choice: it would rewrite every unchanged user each day.

Errors talking to a store become StoreUnavailable, which the server answers with 503.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from refinery.faults import kill_point

DEFAULT_STORE = "sqlite"
SQLITE_FILE = Path("online") / "user_features.sqlite"
DEFAULT_REDIS_PREFIX = "refinery:online:"

Record = tuple[str, str, bytes, bytes]  # user_id, as_of_date, digest, body


class StoreUnavailable(RuntimeError):
    """The online store cannot be reached or has not been materialized yet."""


class OnlineStore(Protocol):
    kind: str

    def get_many(self, user_ids: Sequence[str]) -> list[tuple[str, bytes] | None]: ...

    def current(self, user_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]: ...

    def write(self, records: Sequence[Record], meta: dict[str, str]) -> None: ...

    def meta(self) -> dict[str, str]: ...

    def users(self) -> int: ...

    def size_bytes(self) -> int: ...

    def sample_users(self, n: int) -> list[str]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def open_store(url: str | None, data_root: Path, *, readonly: bool = False) -> OnlineStore:
    """`sqlite` (default: <data root>/online/user_features.sqlite), `sqlite:///abs/path.sqlite`,
    or `redis://host:port/db` (optionally `?prefix=...`)."""
    url = (url or DEFAULT_STORE).strip()
    if url in ("sqlite", "sqlite://"):
        return SQLiteStore(Path(data_root) / SQLITE_FILE, readonly=readonly)
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        return SQLiteStore(Path(parsed.path), readonly=readonly)
    if parsed.scheme in ("redis", "rediss", "unix"):
        return RedisStore(url)
    raise ValueError(
        f"online store {url!r}: use 'sqlite', 'sqlite:///path/file.sqlite' or 'redis://host:port/db'"
    )


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SQLiteStore:
    kind = "sqlite"

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            if self.readonly:
                if not self.path.exists():
                    raise StoreUnavailable(
                        f"no online store at {self.path}: materialize online/user_features first"
                    )
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro",
                    uri=True,
                    check_same_thread=False,
                    isolation_level=None,
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                conn.execute("pragma journal_mode=wal")
                conn.execute(
                    "create table if not exists features (user_id text primary key, "
                    "as_of_date text not null, digest blob not null, body blob not null) "
                    "without rowid"
                )
                conn.execute(
                    "create table if not exists meta (key text primary key, value text not null)"
                )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"online store {self.path}: {exc}") from exc
        self._conn = conn
        return conn

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._connect().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            # a reader opened before the first write sees no tables yet
            self.close()
            raise StoreUnavailable(f"online store {self.path}: {exc}") from exc

    def get_many(self, user_ids: Sequence[str]) -> list[tuple[str, bytes] | None]:
        found: dict[str, tuple[str, bytes]] = {}
        for chunk in _chunks(list(dict.fromkeys(user_ids)), 500):
            marks = ",".join("?" * len(chunk))
            for user, as_of, body in self._query(
                f"select user_id, as_of_date, body from features where user_id in ({marks})", chunk
            ):
                found[user] = (as_of, bytes(body))
        return [found.get(user) for user in user_ids]

    def current(self, user_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        found = {}
        for chunk in _chunks(list(user_ids), 500):
            marks = ",".join("?" * len(chunk))
            for user, as_of, digest in self._query(
                f"select user_id, as_of_date, digest from features where user_id in ({marks})",
                chunk,
            ):
                found[user] = (as_of, bytes(digest))
        return found

    def write(self, records: Sequence[Record], meta: dict[str, str]) -> None:
        conn = self._connect()
        try:
            conn.execute("begin immediate")
            conn.executemany(
                "insert into features (user_id, as_of_date, digest, body) values (?, ?, ?, ?) "
                "on conflict (user_id) do update set as_of_date = excluded.as_of_date, "
                "digest = excluded.digest, body = excluded.body",
                records,
            )
            kill_point("online.sqlite_before_commit")
            conn.executemany(
                "insert into meta (key, value) values (?, ?) "
                "on conflict (key) do update set value = excluded.value",
                list(meta.items()),
            )
            conn.execute("commit")
        except BaseException:
            if conn.in_transaction:
                conn.execute("rollback")
            raise

    def meta(self) -> dict[str, str]:
        return dict(self._query("select key, value from meta"))

    def users(self) -> int:
        return int(self._query("select count(*) from features")[0][0])

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def sample_users(self, n: int) -> list[str]:
        return [
            user
            for (user,) in self._query(
                "select user_id from features order by random() limit ?", (n,)
            )
        ]

    def ping(self) -> None:
        self._query("select 1 from meta limit 1")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RedisStore:
    """Keys: <prefix>u:<user_id> = as-of date (10 bytes) + body; <prefix>digest (hash: user ->
    as-of date + digest); <prefix>meta (hash)."""

    kind = "redis"

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        import redis

        parsed = urlparse(url)
        query = dict(part.split("=", 1) for part in parsed.query.split("&") if "=" in part)
        self.prefix = query.pop("prefix", DEFAULT_REDIS_PREFIX)
        clean = parsed._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()
        self.url = url
        self._redacted = parsed._replace(netloc=parsed.hostname or "", query="").geturl()
        if parsed.port:
            self._redacted = parsed._replace(
                netloc=f"{parsed.hostname}:{parsed.port}", query=""
            ).geturl()
        self._redis_errors = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ResponseError,
            OSError,
        )
        self.client = redis.Redis.from_url(
            clean, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def describe(self) -> str:
        return self._redacted

    def _key(self, user_id: str) -> str:
        return f"{self.prefix}u:{user_id}"

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except self._redis_errors as exc:
            raise StoreUnavailable(f"online store {self._redacted}: {exc}") from exc

    def get_many(self, user_ids: Sequence[str]) -> list[tuple[str, bytes] | None]:
        if not user_ids:
            return []
        if len(user_ids) == 1:
            values = [self._call(self.client.get, self._key(user_ids[0]))]
        else:
            values = self._call(self.client.mget, [self._key(u) for u in user_ids])
        return [None if v is None else (v[:10].decode(), v[10:]) for v in values]

    def current(self, user_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        found = {}
        for chunk in _chunks(list(user_ids), 10_000):
            values = self._call(self.client.hmget, f"{self.prefix}digest", list(chunk))
            for user, value in zip(chunk, values, strict=True):
                if value is not None:
                    found[user] = (value[:10].decode(), value[10:])
        return found

    def write(self, records: Sequence[Record], meta: dict[str, str]) -> None:
        pipe = self.client.pipeline(transaction=True)  # MULTI ... EXEC
        digests = {}
        for user, as_of, digest, body in records:
            pipe.set(self._key(user), as_of.encode() + body)
            digests[user] = as_of.encode() + digest
        for chunk in _chunks(list(digests.items()), 10_000):
            pipe.hset(f"{self.prefix}digest", mapping=dict(chunk))
        if meta:
            pipe.hset(f"{self.prefix}meta", mapping=meta)
        kill_point("online.redis_before_exec")
        self._call(pipe.execute)

    def meta(self) -> dict[str, str]:
        raw = self._call(self.client.hgetall, f"{self.prefix}meta")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def users(self) -> int:
        return int(self._call(self.client.hlen, f"{self.prefix}digest"))

    def size_bytes(self) -> int:
        """Bytes the store's keys take in Redis (MEMORY USAGE, sampled for the user keys)."""
        users = self.users()
        if not users:
            return 0
        sample = self.sample_users(min(users, 200))
        per_user = sum(
            self._call(self.client.memory_usage, self._key(u)) or 0 for u in sample
        ) / max(len(sample), 1)
        digest = self._call(self.client.memory_usage, f"{self.prefix}digest", 0) or 0
        return int(per_user * users + digest)

    def sample_users(self, n: int) -> list[str]:
        users = self._call(self.client.hrandfield, f"{self.prefix}digest", n) or []
        return [u.decode() for u in users]

    def ping(self) -> None:
        self._call(self.client.ping)

    def close(self) -> None:
        self.client.close()


def decode_meta_schema(meta: dict[str, str]) -> list[dict[str, Any]]:
    return json.loads(meta["schema"]) if "schema" in meta else []
