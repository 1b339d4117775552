"""The simulated shop: users and products, evolved one day at a time from the start date.

The population is small state (a few arrays per entity), so every call re-simulates it from
day 0: that is what makes day K identical whether it is generated alone or in a long run.
Arrays are never changed in place; a day's step builds new arrays where something changed,
so the states of earlier days stay valid for the late and re-delivered event streams.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from refinery.synth.config import SynthConfig
from refinery.synth.rng import rng_for

# Offsets an event_time may carry. "Z" is what server-stamped events use; the others are the
# device's local offset. Index 1 ("+00:00") is the same instant as "Z", written differently.
OFFSETS = (
    "Z", "+00:00", "+01:00", "+02:00", "-05:00", "-06:00", "-08:00",
    "+05:30", "-03:00", "+09:00", "+10:00", "+08:00", "+05:45",
)  # fmt: skip
OFFSET_MINUTES = np.array(
    [0, 0, 60, 120, -300, -360, -480, 330, -180, 540, 600, 480, 345], dtype=np.int64
)

# country, share of users, home offsets (indices into OFFSETS), effect on purchase propensity
COUNTRIES = (
    ("US", 0.30, (4, 5, 6), 0.25),
    ("GB", 0.10, (1, 2), 0.15),
    ("DE", 0.10, (2, 3), 0.10),
    ("FR", 0.07, (2,), 0.0),
    ("IN", 0.10, (7,), -0.45),
    ("BR", 0.07, (8,), -0.25),
    ("JP", 0.05, (9,), 0.05),
    ("CA", 0.05, (4, 6), 0.15),
    ("AU", 0.04, (10, 11), 0.10),
    ("ES", 0.04, (2,), -0.05),
    ("MX", 0.04, (5,), -0.30),
    ("NL", 0.03, (2,), 0.10),
    ("NP", 0.01, (12,), -0.50),
)
COUNTRY_CODES = tuple(c[0] for c in COUNTRIES)
COUNTRY_SHARE = np.array([c[1] for c in COUNTRIES]) / sum(c[1] for c in COUNTRIES)
COUNTRY_EFFECT = np.array([c[3] for c in COUNTRIES])

_HOME_OFFSET_COUNT = np.array([len(c[2]) for c in COUNTRIES])
_HOME_OFFSET_TABLE = np.array(
    [[c[2][i % len(c[2])] for i in range(3)] for c in COUNTRIES], dtype=np.int8
)

PLANS = ("free", "plus", "pro")
PLAN_SHARE = np.array([0.70, 0.20, 0.10])
PLAN_EFFECT = np.array([0.0, 0.45, 0.9])

DEVICES = ("web", "ios", "android")
DEVICE_SHARE = np.array([0.50, 0.28, 0.22])

# category, share of browsing, median list price (USD), log-normal sigma of prices
CATEGORIES = (
    ("electronics", 0.14, 120.0, 0.9),
    ("home_kitchen", 0.11, 35.0, 0.7),
    ("fashion", 0.14, 40.0, 0.6),
    ("beauty", 0.09, 18.0, 0.5),
    ("sports_outdoors", 0.07, 45.0, 0.7),
    ("books", 0.08, 14.0, 0.4),
    ("toys_games", 0.07, 25.0, 0.6),
    ("grocery", 0.09, 8.0, 0.5),
    ("health", 0.06, 16.0, 0.5),
    ("automotive", 0.04, 30.0, 0.8),
    ("garden", 0.04, 28.0, 0.7),
    ("pet_supplies", 0.07, 20.0, 0.6),
)
CATEGORY_NAMES = tuple(c[0] for c in CATEGORIES)
CATEGORY_SHARE = np.array([c[1] for c in CATEGORIES]) / sum(c[1] for c in CATEGORIES)
CATEGORY_MEDIAN_PRICE = np.array([c[2] for c in CATEGORIES])
CATEGORY_PRICE_SIGMA = np.array([c[3] for c in CATEGORIES])
BRANDS_PER_CATEGORY = 6
_BRAND_HEADS = ("Nord", "Vela", "Aster", "Kiro", "Lumo", "Brava", "Oak", "Tessa", "Zen", "Polar")
_BRAND_TAILS = ("line", "works", "craft", "labs", "co", "wear", "home", "gear", "nest")
BRANDS = tuple(f"{h}{t}" for h in _BRAND_HEADS for t in _BRAND_TAILS)  # 90 names

# Daily rates of the population's evolution.
USER_GROWTH_PER_DAY = 0.004
PLAN_CHANGE_PER_DAY = 0.002
OPT_IN_TOGGLE_PER_DAY = 0.003
PRODUCT_GROWTH_PER_DAY = 0.003
PRICE_CHANGE_PER_DAY = 0.02
DEACTIVATE_PER_DAY = 0.002
REACTIVATE_PER_DAY = 0.02
MAX_INITIAL_TENURE_DAYS = 1500


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Users:
    """Every user the CRM knows at the end of a day (row i is user_id u{i+1:07d})."""

    signup_day: np.ndarray  # int32, day index relative to start (negative: before start)
    signup_second: np.ndarray  # int32, second of the signup day (UTC)
    country: np.ndarray  # int8 index into COUNTRIES
    home_offset: np.ndarray  # int8 index into OFFSETS
    birth_year: np.ndarray  # int32
    opt_in: np.ndarray  # bool
    plan: np.ndarray  # int8 index into PLANS
    intent: np.ndarray  # float64 latent purchase intent, N(0, 1), hidden
    engagement: np.ndarray  # float64 latent activity, N(0, 1), hidden
    favourite_category: np.ndarray  # int8
    preferred_device: np.ndarray  # int8 index into DEVICES

    @property
    def count(self) -> int:
        return len(self.signup_day)

    def purchase_logit(self, day_index: int) -> np.ndarray:
        """Hidden propensity: plan, tenure, country and a latent intent."""
        tenure_years = np.maximum(day_index - self.signup_day, 0) / 365.0
        return (
            -1.3
            + PLAN_EFFECT[self.plan]
            + 0.3 * np.log1p(tenure_years)
            + COUNTRY_EFFECT[self.country]
            + 1.0 * self.intent
        )

    def buy_given_cart(self, day_index: int) -> np.ndarray:
        return _sigmoid(self.purchase_logit(day_index))

    def cart_given_view(self) -> np.ndarray:
        return np.clip(0.05 * np.exp(0.45 * self.intent + 0.2 * self.plan), 0.005, 0.5)

    def activity(self) -> np.ndarray:
        """Relative session rate; buyers browse more, which is what makes labels learnable."""
        return np.exp(0.9 * self.engagement + 0.4 * self.intent + 0.15 * self.plan)


@dataclass(frozen=True)
class Products:
    """The catalogue at the end of a day (row i is product_id p{i+1:06d})."""

    category: np.ndarray  # int8
    brand: np.ndarray  # int16 index into BRANDS
    base_price: np.ndarray  # float64 USD before any drift
    popularity: np.ndarray  # float64 > 0
    active: np.ndarray  # bool

    @property
    def count(self) -> int:
        return len(self.category)


@dataclass(frozen=True)
class WorldState:
    day_index: int
    users: Users
    products: Products


def _new_users(rng: np.random.Generator, n: int, signup_day: np.ndarray) -> dict:
    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_SHARE).astype(np.int8)
    choice = (rng.random(n) * _HOME_OFFSET_COUNT[country]).astype(np.int64)
    home_offset = _HOME_OFFSET_TABLE[country, choice]
    birth_year = np.clip(np.round(rng.normal(1988, 12, n)), 1940, 2008).astype(np.int32)
    young = (birth_year > 1990).astype(float)
    device_p = np.stack(
        [
            DEVICE_SHARE[0] - 0.15 * young,
            DEVICE_SHARE[1] + 0.08 * young,
            DEVICE_SHARE[2] + 0.07 * young,
        ],
        axis=1,
    )
    device_u = rng.random(n)
    preferred_device = (device_u[:, None] > np.cumsum(device_p, axis=1)).sum(axis=1)
    return {
        "signup_day": signup_day.astype(np.int32),
        "signup_second": rng.integers(0, 86_400, n).astype(np.int32),
        "country": country,
        "home_offset": home_offset,
        "birth_year": birth_year,
        "opt_in": rng.random(n) < 0.4,
        "plan": rng.choice(3, size=n, p=PLAN_SHARE).astype(np.int8),
        "intent": rng.standard_normal(n),
        "engagement": rng.standard_normal(n),
        "favourite_category": rng.choice(len(CATEGORIES), size=n, p=CATEGORY_SHARE).astype(np.int8),
        "preferred_device": np.minimum(preferred_device, 2).astype(np.int8),
    }


def _new_products(rng: np.random.Generator, n: int) -> dict:
    category = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_SHARE).astype(np.int8)
    brand = (
        category.astype(np.int16) * BRANDS_PER_CATEGORY + rng.integers(0, BRANDS_PER_CATEGORY, n)
    ) % len(BRANDS)
    price = np.exp(
        np.log(CATEGORY_MEDIAN_PRICE[category])
        + CATEGORY_PRICE_SIGMA[category] * rng.standard_normal(n)
    )
    return {
        "category": category,
        "brand": brand.astype(np.int16),
        "base_price": np.maximum(np.round(price, 2), 0.5),
        "popularity": rng.pareto(1.5, n) + 0.05,
        "active": np.ones(n, dtype=bool),
    }


def initial_state(config: SynthConfig) -> WorldState:
    """The shop the evening before `start`: users signed up over the past ~4 years."""
    rng = rng_for(config.seed, -1, "population")
    signup_day = -rng.integers(1, MAX_INITIAL_TENURE_DAYS, config.users)
    users = Users(**_new_users(rng, config.users, signup_day))
    products = Products(**_new_products(rng, config.products))
    return WorldState(day_index=-1, users=users, products=products)


def _append(old: dict, new: dict) -> dict:
    return {key: np.concatenate([old[key], new[key]]) for key in old}


def step(state: WorldState, seed: int) -> WorldState:
    """One day of change: signups, plan changes, opt-in toggles, catalogue churn and repricing."""
    day = state.day_index + 1
    rng = rng_for(seed, day, "population")
    users = dict(state.users.__dict__)
    n_users = state.users.count

    changed = rng.random(n_users) < PLAN_CHANGE_PER_DAY
    if changed.any():
        upgrade = rng.random(int(changed.sum())) < _sigmoid(state.users.intent[changed])
        plan = users["plan"].copy()
        plan[changed] = np.clip(plan[changed] + np.where(upgrade, 1, -1), 0, 2)
        users["plan"] = plan
    toggled = rng.random(n_users) < OPT_IN_TOGGLE_PER_DAY
    if toggled.any():
        users["opt_in"] = users["opt_in"] ^ toggled
    n_new = int(rng.poisson(USER_GROWTH_PER_DAY * n_users))
    if n_new:
        users = _append(users, _new_users(rng, n_new, np.full(n_new, day)))

    products = dict(state.products.__dict__)
    n_products = state.products.count
    repriced = rng.random(n_products) < PRICE_CHANGE_PER_DAY
    if repriced.any():
        price = products["base_price"].copy()
        factor = np.exp(rng.normal(0.0, 0.08, int(repriced.sum())))
        price[repriced] = np.maximum(np.round(price[repriced] * factor, 2), 0.5)
        products["base_price"] = price
    active = products["active"]
    flip = np.where(
        active,
        rng.random(n_products) < DEACTIVATE_PER_DAY,
        rng.random(n_products) < REACTIVATE_PER_DAY,
    )
    if flip.any():
        products["active"] = active ^ flip
    n_new_products = int(rng.poisson(PRODUCT_GROWTH_PER_DAY * n_products + 0.3))
    if n_new_products:
        products = _append(products, _new_products(rng, n_new_products))

    return WorldState(day_index=day, users=Users(**users), products=Products(**products))


def states_through(config: SynthConfig, last_day: int):
    """Yield the world at the end of every day 0..last_day, in order."""
    state = initial_state(config)
    for _ in range(last_day + 1):
        state = step(state, config.seed)
        yield state


def state_at(config: SynthConfig, day_index: int) -> WorldState:
    state = None
    for state in states_through(config, day_index):
        pass
    return state


def price_multiplier(config: SynthConfig, day: dt.date) -> float:
    return config.drift.price_level if config.drift.active_on(day) else 1.0


def users_snapshot(state: WorldState, config: SynthConfig) -> pl.DataFrame:
    """The CRM export of that day, as users.csv carries it."""
    users = state.users
    n = users.count
    signup = np.datetime64(config.start, "D") + users.signup_day.astype("timedelta64[D]")
    return pl.DataFrame(
        {
            "user_id": pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(7),
            "signup_date": signup,
            "country": pl.Series(COUNTRY_CODES).gather(users.country.astype(np.int64)),
            "birth_year": users.birth_year,
            "marketing_opt_in": users.opt_in,
            "plan": pl.Series(PLANS).gather(users.plan.astype(np.int64)),
        }
    ).with_columns(pl.concat_str(pl.lit("u"), "user_id").alias("user_id"))


def products_snapshot(state: WorldState, config: SynthConfig) -> pl.DataFrame:
    """The catalogue export of that day, with the drifted price level when drift is on."""
    products = state.products
    n = products.count
    level = price_multiplier(config, config.date_of(state.day_index))
    return pl.DataFrame(
        {
            "product_id": pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(6),
            "category": pl.Series(CATEGORY_NAMES).gather(products.category.astype(np.int64)),
            "brand": pl.Series(BRANDS).gather(products.brand.astype(np.int64)),
            "list_price": np.round(products.base_price * level, 2),
            "active": products.active,
        }
    ).with_columns(pl.concat_str(pl.lit("p"), "product_id").alias("product_id"))


def hidden_user_traits(config: SynthConfig, day_index: int) -> pl.DataFrame:
    """Ground truth the data never shows: each user's purchase propensity at `day_index`.

    `expected_purchases` is proportional to the expected purchases per day (session rate x
    carts per session x purchase given cart); tests rank-correlate it with observed purchases.
    """
    state = state_at(config, day_index)
    users = state.users
    activity = users.activity()
    return pl.DataFrame(
        {
            "user_id": [f"u{i:07d}" for i in range(1, users.count + 1)],
            "purchase_logit": users.purchase_logit(day_index),
            "buy_given_cart": users.buy_given_cart(day_index),
            "activity": activity,
            "expected_purchases": activity
            * users.cart_given_view()
            * users.buy_given_cart(day_index),
        }
    )
