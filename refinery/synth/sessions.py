"""Browsing sessions as a vectorised Markov chain: view -> add_to_cart -> purchase, with clicks.

One call simulates a whole stream of sessions for one event day; every step of the chain is a
numpy operation over the sessions still alive, so the cost is proportional to the number of
events, not to a Python loop over them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from refinery.synth.config import SynthConfig
from refinery.synth.rng import rng_for
from refinery.synth.world import (
    CATEGORIES,
    CATEGORY_SHARE,
    DEVICE_SHARE,
    OFFSET_MINUTES,
    WorldState,
    price_multiplier,
)

VIEW, CLICK, ADD_TO_CART, PURCHASE = 0, 1, 2, 3
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")

# Where an event row comes from, which decides where it may be written and what may happen to it.
ON_TIME, RESEND_ORIGINAL, LATE, REDELIVERED, TRUNCATED = 0, 1, 2, 3, 4
STREAM_LETTER = {"bulk": "b", "resend": "r", "late": "l", "truncated_gzip": "t"}

DAY_MS = 86_400_000
MAX_STEPS = 60
END_PROBABILITY = np.array([0.17, 0.25, 0.12, 0.45])  # after view, click, cart, purchase
CLICK_SHARE = 0.15
FIRST_EVENT_CLICK_SHARE = 0.15
MEAN_GAP_MS = 40_000
# Mean events per session of the chain above, measured; used to turn an event target into
# a number of sessions.
MEAN_EVENTS_PER_SESSION = 5.4

# Local hour of a session start: quiet nights, a lunch bump, a busy evening.
HOUR_WEIGHTS = np.array(
    [0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.5, 0.9, 1.2, 1.3, 1.3, 1.4,
     1.6, 1.5, 1.3, 1.3, 1.4, 1.6, 1.9, 2.3, 2.5, 2.2, 1.6, 1.0]
)  # fmt: skip
HOUR_CDF = np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum()
# Monday..Sunday: weekends are busier.
WEEKDAY_FACTOR = np.array([0.93, 0.91, 0.93, 0.96, 1.04, 1.15, 1.08])
WEEKDAY_FACTOR = WEEKDAY_FACTOR / WEEKDAY_FACTOR.mean()

QUANTITY_VALUES = np.array([1, 2, 3, 4, 5])
QUANTITY_CDF = np.cumsum([0.78, 0.15, 0.05, 0.015, 0.005])
DISCOUNTS = np.array([1.0, 0.9, 0.8, 0.7])
DISCOUNT_CDF = np.cumsum([0.80, 0.12, 0.05, 0.03])


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


@dataclass
class EventBatch:
    """Events as parallel numpy columns, plus the formatting choices of their lines.

    The formatting choices (offset written, case of event_type, optional fields) are drawn with
    the events, so a re-delivered event renders to exactly the bytes of its first delivery.
    """

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, index: np.ndarray) -> EventBatch:
        return EventBatch({k: v[index] for k, v in self.columns.items()})

    @staticmethod
    def concat(batches: list[EventBatch]) -> EventBatch:
        keys = batches[0].columns.keys()
        return EventBatch({k: np.concatenate([b.columns[k] for b in batches]) for k in keys})


def favoured_categories(seed: int) -> np.ndarray:
    """The 2-3 categories a category-mix drift pushes traffic to (fixed per seed)."""
    rng = rng_for(seed, -1, "drift")
    return np.sort(rng.choice(len(CATEGORIES), size=3, replace=False))


def events_target(config: SynthConfig, day_index: int) -> int:
    """Events a day should carry: the configured mean x weekday seasonality x a little noise."""
    rng = rng_for(config.seed, day_index, "event_count")
    weekday = config.date_of(day_index).weekday()
    noise = float(np.exp(rng.normal(0.0, 0.04)))
    return max(1, round(config.events_per_day * WEEKDAY_FACTOR[weekday] * noise))


class _ProductSampler:
    """Draws viewed products: by category, then by popularity among active products."""

    def __init__(self, state: WorldState):
        products = state.products
        active = np.flatnonzero(products.active)
        by_category = active[np.argsort(products.category[active], kind="stable")]
        weights = products.popularity[by_category]
        self.products = by_category
        self.cumulative = np.cumsum(weights)
        category_total = np.bincount(
            products.category[by_category], weights=weights, minlength=len(CATEGORIES)
        )
        self.category_total = category_total
        self.category_before = np.concatenate([[0.0], np.cumsum(category_total)[:-1]])
        self.total = float(self.cumulative[-1]) if len(self.cumulative) else 0.0

    def draw(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        u = rng.random(len(category))
        empty = self.category_total[category] <= 0
        target = np.where(
            empty,
            u * self.total,
            self.category_before[category] + u * self.category_total[category],
        )
        index = np.searchsorted(self.cumulative, target, side="right")
        return self.products[np.minimum(index, len(self.products) - 1)]


def simulate_stream(
    config: SynthConfig,
    state: WorldState,
    stream: str,
    n_sessions: int,
    delivery: str,
    part: int = 0,
    session_base: int = 0,
) -> EventBatch:
    """Sessions of one stream (or one part of a large stream) of event day `state.day_index`.

    `delivery` says when the events land: "on_time" (their own day), "late" (whole sessions
    uploaded 1-3 days later, mostly by mobile apps that were offline), "resend" (on time, and
    once more verbatim 1-3 days later).
    """
    day = state.day_index
    date = config.date_of(day)
    rng = rng_for(config.seed, day, stream, part)
    drift_on = config.drift.active_on(date)
    day_start_ms = (
        int(
            (dt.datetime(date.year, date.month, date.day) - dt.datetime(1970, 1, 1)).total_seconds()
        )
        * 1000
    )
    users = state.users

    # --- sessions: who, when, on what --------------------------------------------------
    eligible = users.signup_day <= day
    weights = users.activity() * eligible
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    user = np.minimum(np.searchsorted(cdf, rng.random(n_sessions), side="right"), users.count - 1)

    local_hour = _draw(HOUR_CDF, rng.random(n_sessions))
    local_second = local_hour * 3600 + rng.random(n_sessions) * 3600
    offset_seconds = OFFSET_MINUTES[users.home_offset[user]] * 60
    utc_second = np.mod(local_second - offset_seconds, 86_400)
    signup_today = users.signup_day[user] == day
    if signup_today.any():
        signed = users.signup_second[user].astype(np.float64)
        after_signup = signed + rng.random(n_sessions) * (86_400 - signed)
        utc_second = np.where(signup_today, after_signup, utc_second)
    start_ms = day_start_ms + (utc_second * 1000).astype(np.int64)

    device = np.where(
        rng.random(n_sessions) < 0.8,
        users.preferred_device[user],
        _draw(np.cumsum(DEVICE_SHARE), rng.random(n_sessions)),
    ).astype(np.int8)
    if delivery == "late":
        device = np.where(rng.random(n_sessions) < 0.9, 1 + (rng.random(n_sessions) < 0.45), device)
    if drift_on and config.drift.device_mix > 0:
        moved = (device == 0) & (rng.random(n_sessions) < config.drift.device_mix)
        device = np.where(moved, 1 + (rng.random(n_sessions) < 0.45), device).astype(np.int8)
    device = np.where(rng.random(n_sessions) < 0.02, -1, device).astype(np.int8)

    # line formatting habits of the client that sent the session
    has_session = rng.random(n_sessions) >= np.where(device == 0, 0.06, 0.01)
    offset_u = rng.random(n_sessions)
    offset = np.where(offset_u < 0.45, 0, np.where(offset_u < 0.5, 1, users.home_offset[user]))
    case_u = rng.random(n_sessions)
    case = np.where(case_u < 0.96, 0, np.where(case_u < 0.99, 1, 2)).astype(np.int8)
    has_fraction = rng.random(n_sessions) < 0.8
    sends_default_quantity = rng.random(n_sessions) < 0.6

    buy_given_cart = users.buy_given_cart(day)[user]
    if drift_on:
        buy_given_cart = np.clip(buy_given_cart * config.drift.propensity, 0.0, 1.0)
    cart_given_view = users.cart_given_view()[user]

    # sessions numbered in start order: session ids then read like a log
    by_start = np.argsort(start_ms, kind="stable")
    session_columns = {
        "user": user,
        "start_ms": start_ms,
        "device": device,
        "has_session": has_session,
        "offset": offset,
        "case": case,
        "has_fraction": has_fraction,
        "sends_default_quantity": sends_default_quantity,
        "buy_given_cart": buy_given_cart,
        "cart_given_view": cart_given_view,
    }
    session_columns = {k: v[by_start] for k, v in session_columns.items()}
    user = session_columns["user"]

    # --- the chain -------------------------------------------------------------------------
    sampler = _ProductSampler(state)
    favoured = favoured_categories(config.seed)
    category_mix = config.drift.category_mix if drift_on else 0.0
    favourite = users.favourite_category

    def view_products(sessions: np.ndarray) -> np.ndarray:
        k = len(sessions)
        category = np.where(
            rng.random(k) < 0.45,
            favourite[user[sessions]],
            _draw(np.cumsum(CATEGORY_SHARE), rng.random(k)),
        )
        if category_mix > 0:
            moved = rng.random(k) < category_mix
            category = np.where(moved, favoured[rng.integers(0, len(favoured), k)], category)
        return sampler.draw(rng, category)

    day_end_ms = day_start_ms + DAY_MS
    alive = np.arange(n_sessions)
    kind = np.where(rng.random(n_sessions) < FIRST_EVENT_CLICK_SHARE, CLICK, VIEW).astype(np.int8)
    product = np.full(n_sessions, -1, dtype=np.int64)
    is_view = kind == VIEW
    product[is_view] = view_products(alive[is_view])
    cart_product = np.full(n_sessions, -1, dtype=np.int64)
    cart_quantity = np.ones(n_sessions, dtype=np.int8)
    quantity = np.ones(n_sessions, dtype=np.int8)
    time_ms = session_columns["start_ms"].copy()

    recorded: list[tuple[np.ndarray, ...]] = []
    for _ in range(MAX_STEPS):
        keep = time_ms < day_end_ms  # sessions are cut at midnight: an event never leaves its day
        alive, kind, product, cart_product = (
            alive[keep],
            kind[keep],
            product[keep],
            cart_product[keep],
        )
        cart_quantity, quantity, time_ms = cart_quantity[keep], quantity[keep], time_ms[keep]
        if len(alive) == 0:
            break
        recorded.append((alive, kind, product, quantity, time_ms))

        k = len(alive)
        buy = (kind == ADD_TO_CART) & (rng.random(k) < session_columns["buy_given_cart"][alive])
        go_on = buy | (rng.random(k) >= END_PROBABILITY[kind])
        cart = ~buy & (kind == VIEW) & (rng.random(k) < session_columns["cart_given_view"][alive])
        click = ~buy & ~cart & (rng.random(k) < CLICK_SHARE)
        next_kind = np.where(
            buy, PURCHASE, np.where(cart, ADD_TO_CART, np.where(click, CLICK, VIEW))
        )
        next_product = np.where(buy, cart_product, np.where(cart, product, -1))
        new_view = next_kind == VIEW
        next_product[new_view] = view_products(alive[new_view])
        next_cart_product = np.where(cart, product, cart_product)
        cart_quantity = np.where(
            cart, QUANTITY_VALUES[_draw(QUANTITY_CDF, rng.random(k))], cart_quantity
        ).astype(np.int8)
        next_quantity = np.where(buy | cart, cart_quantity, 1).astype(np.int8)
        gap = 1000 + rng.exponential(MEAN_GAP_MS, k).astype(np.int64)

        alive, kind, product = alive[go_on], next_kind[go_on].astype(np.int8), next_product[go_on]
        cart_product, cart_quantity = next_cart_product[go_on], cart_quantity[go_on]
        quantity, time_ms = next_quantity[go_on], (time_ms + gap)[go_on]

    if recorded:
        session, kind, product, quantity, time_ms = (
            np.concatenate([r[i] for r in recorded]) for i in range(5)
        )
    else:
        session = np.zeros(0, dtype=np.int64)
        kind = np.zeros(0, dtype=np.int8)
        product = np.zeros(0, dtype=np.int64)
        quantity = np.zeros(0, dtype=np.int8)
        time_ms = np.zeros(0, dtype=np.int64)
    order = np.argsort(time_ms, kind="stable")
    session, kind, product, quantity, time_ms = (
        session[order],
        kind[order],
        product[order],
        quantity[order],
        time_ms[order],
    )
    n = len(session)

    cents = np.full(n, -1, dtype=np.int64)
    bought = kind == PURCHASE
    if bought.any():
        price = state.products.base_price[product[bought]] * price_multiplier(config, date)
        discount = DISCOUNTS[_draw(DISCOUNT_CDF, rng.random(int(bought.sum())))]
        noise = 1.0 + rng.normal(0.0, 0.01, int(bought.sum()))
        cents[bought] = np.maximum(
            np.round(price * quantity[bought] * discount * noise * 100), 0
        ).astype(np.int64)

    columns = {
        "seq": np.zeros(n, dtype=np.int64),  # numbered once all parts are merged
        "event_day": np.full(n, day, dtype=np.int32),
        "stream": np.full(n, ord(STREAM_LETTER[stream]), dtype=np.int8),
        "session_seq": session.astype(np.int64) + session_base,
        "user": user[session].astype(np.int64),
        "event_type": kind.astype(np.int8),
        "time_ms": time_ms.astype(np.int64),
        "product": product.astype(np.int64),
        "quantity": quantity.astype(np.int8),
        "cents": cents,
        "device": session_columns["device"][session],
        "has_session": session_columns["has_session"][session],
        "offset": session_columns["offset"][session].astype(np.int8),
        "case": session_columns["case"][session],
        "has_fraction": session_columns["has_fraction"][session],
        "has_quantity": session_columns["sends_default_quantity"][session] | (kind >= ADD_TO_CART),
    }

    # --- delivery: which arrival day, at what time of it ----------------------------------
    if delivery == "on_time":
        columns["arrival_day"] = np.full(n, day, dtype=np.int32)
        columns["arrival_ms"] = time_ms - day_start_ms
        columns["origin"] = np.full(n, ON_TIME, dtype=np.int8)
    elif delivery in ("late", "resend"):
        # whole sessions travel together: a late upload or a re-sent batch
        delay = 1 + _draw(np.cumsum([0.6, 0.3, 0.1]), rng.random(n_sessions))
        landed_ms = rng.integers(0, DAY_MS, n_sessions)
        later_day = (day + delay[session]).astype(np.int32)
        later_ms = np.minimum(
            landed_ms[session] + (time_ms - session_columns["start_ms"][session]), DAY_MS - 1
        )
        if delivery == "late":
            columns["arrival_day"] = later_day
            columns["arrival_ms"] = later_ms
            columns["origin"] = np.full(n, LATE, dtype=np.int8)
        else:
            columns["arrival_day"] = np.full(n, day, dtype=np.int32)
            columns["arrival_ms"] = time_ms - day_start_ms
            columns["origin"] = np.full(n, RESEND_ORIGINAL, dtype=np.int8)
            columns["resend_day"] = later_day
            columns["resend_ms"] = later_ms
    else:
        raise ValueError(f"unknown delivery {delivery!r}")
    return EventBatch(columns)


# Sessions simulated per part of a stream: parts have their own random streams, so a large day
# can be simulated in parallel threads and still give the same events.
SESSIONS_PER_PART = 100_000


def simulate_stream_parts(
    config: SynthConfig, state: WorldState, stream: str, n_sessions: int, delivery: str, pool=None
) -> EventBatch:
    """A whole stream, simulated in parts, merged in time order and numbered (the event ids)."""
    n_parts = max(1, -(-n_sessions // SESSIONS_PER_PART))
    bounds = np.linspace(0, n_sessions, n_parts + 1).astype(np.int64)

    def part(k: int) -> EventBatch:
        size = int(bounds[k + 1] - bounds[k])
        return simulate_stream(
            config, state, stream, size, delivery, part=k, session_base=int(bounds[k])
        )

    parts = (
        list(pool.map(part, range(n_parts)))
        if pool is not None and n_parts > 1
        else [part(k) for k in range(n_parts)]
    )
    merged = EventBatch.concat(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        merged = merged.take(np.argsort(merged["time_ms"], kind="stable"))
    merged.columns["seq"] = np.arange(len(merged), dtype=np.int64)
    return merged


_INT32 = np.iinfo(np.int32)


class _PackedPart:
    """One part of a stream, sorted by time, in about 33 bytes an event instead of about 75.

    A column constant over the part is kept as one value, `arrival_ms` (time_ms minus a
    constant, for on-time streams) as that constant, int64 columns whose values fit in int32
    as int32. Rows are unpacked to exactly the original values and dtypes.
    """

    def __init__(self, batch: EventBatch):
        columns = batch.columns
        self.n = len(batch)
        self.time_ms = columns["time_ms"]
        self.stored: dict[str, tuple] = {}
        for name, values in columns.items():
            if name == "time_ms":
                continue
            if self.n and (values == values[0]).all():
                self.stored[name] = ("constant", values[0], values.dtype)
                continue
            if name == "arrival_ms" and self.n:
                delta = values - self.time_ms
                if (delta == delta[0]).all():
                    self.stored[name] = ("after_time", delta[0], values.dtype)
                    continue
            if (
                values.dtype == np.int64
                and self.n
                and _INT32.min <= values.min()
                and values.max() <= _INT32.max
            ):
                self.stored[name] = ("narrowed", values.astype(np.int32), values.dtype)
            else:
                self.stored[name] = ("as_is", values, values.dtype)
        self.names = tuple(columns)

    def rows(self, a: int, b: int, names) -> dict[str, np.ndarray]:
        out = {}
        for name in names:
            if name == "time_ms":
                out[name] = self.time_ms[a:b]
                continue
            how, value, dtype = self.stored[name]
            if how == "constant":
                out[name] = np.full(b - a, value, dtype=dtype)
            elif how == "after_time":
                out[name] = (self.time_ms[a:b] + value).astype(dtype, copy=False)
            elif how == "narrowed":
                out[name] = value[a:b].astype(dtype)
            else:
                out[name] = value[a:b]
        return out


class StreamParts:
    """A whole stream kept as its simulated parts, merged and numbered one time window at a time.

    `window(lo, hi)` gives exactly the rows of `simulate_stream_parts` (same stream, same
    arguments) whose time_ms is in [lo, hi), in the same order and with the same `seq`: the
    merged stream is a stable sort by time of the parts laid end to end, so its rows in a
    window are the parts' rows in that window, laid end to end in part order and stably
    sorted by time; their seq starts at the number of rows before `lo`. Holding the parts
    packed instead of the merged stream (plus the copies a merge makes) is what lets one very
    large day be written in bounded memory.
    """

    def __init__(self, parts: list[_PackedPart]):
        self.parts = parts
        self.names = parts[0].names

    def __len__(self) -> int:
        return sum(p.n for p in self.parts)

    def window(self, lo: int | None, hi: int | None, names=None) -> EventBatch:
        """Rows with lo <= time_ms < hi (None: unbounded), with the named columns (and seq)."""
        wanted = [n for n in (names or self.names) if n != "seq"]
        if "time_ms" not in wanted:
            wanted.append("time_ms")
        first = 0
        pieces = []
        for part in self.parts:
            a = 0 if lo is None else int(np.searchsorted(part.time_ms, lo, side="left"))
            b = part.n if hi is None else int(np.searchsorted(part.time_ms, hi, side="left"))
            first += a
            pieces.append(EventBatch(part.rows(a, b, wanted)))
        merged = EventBatch.concat(pieces) if len(pieces) > 1 else pieces[0]
        if len(pieces) > 1:
            merged = merged.take(np.argsort(merged["time_ms"], kind="stable"))
        seq = np.arange(first, first + len(merged), dtype=np.int64)
        return EventBatch({"seq": seq, **merged.columns})


def simulate_stream_packed(
    config: SynthConfig, state: WorldState, stream: str, n_sessions: int, delivery: str, pool=None
) -> StreamParts:
    """The stream `simulate_stream_parts` gives, kept packed in its parts (see StreamParts)."""
    n_parts = max(1, -(-n_sessions // SESSIONS_PER_PART))
    bounds = np.linspace(0, n_sessions, n_parts + 1).astype(np.int64)

    def part(k: int) -> _PackedPart:
        size = int(bounds[k + 1] - bounds[k])
        return _PackedPart(
            simulate_stream(
                config, state, stream, size, delivery, part=k, session_base=int(bounds[k])
            )
        )

    parts = (
        list(pool.map(part, range(n_parts)))
        if pool is not None and n_parts > 1
        else [part(k) for k in range(n_parts)]
    )
    return StreamParts(parts)
