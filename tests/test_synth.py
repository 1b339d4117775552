"""refinery-synth: determinism, the landing contract, faults vs manifest, realism, drift."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from refinery.synth import DriftSettings, SynthConfig, generate
from refinery.synth.cli import main
from refinery.synth.faults import FAULT_KINDS, INVALID_KINDS
from refinery.synth.lines import Cents, Digits, Lit, Lut, Optional, Table, render
from refinery.synth.sessions import favoured_categories
from refinery.synth.world import CATEGORY_NAMES, hidden_user_traits

START = dt.date(2025, 1, 6)  # a Monday
EVENT_TYPES = {"view", "click", "add_to_cart", "purchase"}
REQUIRED = ("event_id", "user_id", "event_type", "event_time")


def small_config(**overrides) -> SynthConfig:
    settings = {
        "start": START,
        "days": 6,
        "users": 400,
        "products": 120,
        "events_per_day": 2600,
        "seed": 7,
    }
    settings.update(overrides)
    return SynthConfig(**settings)


def read_lines(path: Path) -> list[bytes]:
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return raw.splitlines()


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def parse_utc(value: str) -> dt.datetime:
    """The contract's event_time: ISO-8601 with Z or an offset; raises otherwise."""
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"no offset in {value!r}")
    return parsed.astimezone(dt.UTC)


def contract_problem(line: bytes, arrival: dt.date) -> str | None:
    """Why a landing line breaks the events contract (None when it is valid)."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"unparseable: {error}"
    for field in REQUIRED:
        if field not in record:
            return f"missing {field}"
    if not isinstance(record["event_id"], str) or not isinstance(record["user_id"], str):
        return "id not a string"
    kind = record["event_type"]
    if not isinstance(kind, str) or kind.lower() not in EVENT_TYPES:
        return f"unknown event_type {kind!r}"
    kind = kind.lower()
    if not isinstance(record["event_time"], str):
        return "event_time not a string"
    try:
        when = parse_utc(record["event_time"])
    except ValueError:
        return "bad event_time"
    if when >= dt.datetime.combine(arrival + dt.timedelta(days=1), dt.time(), dt.UTC):
        return "event_time after the arrival day"
    amount = record.get("amount")
    quantity = record.get("quantity", 1)
    if amount is not None and not isinstance(amount, (int, float)):
        return "amount not a number"
    if not isinstance(quantity, int) or quantity < 1:
        return "bad quantity"
    if kind == "purchase" and (amount is None or amount < 0):
        return "purchase without a non-negative amount"
    if kind != "purchase" and amount is not None:
        return "amount on a non-purchase"
    if kind != "click" and not record.get("product_id"):
        return "missing product_id"
    if record.get("device") not in (None, "web", "ios", "android"):
        return "bad device"
    return None


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> tuple[SynthConfig, Path]:
    config = small_config(
        empty_file_days=(2,), truncated_gzip_days=(3,), users_missing_column_days=(4,)
    )
    root = tmp_path_factory.mktemp("synth")
    generate(config, root)
    return config, root / "landing"


def manifests(landing_dir: Path) -> dict[str, dict]:
    return {
        p.stem: json.loads(p.read_text())
        for p in sorted((landing_dir / "_manifest").glob("*.json"))
    }


def regular_files(landing_dir: Path, date: str, manifest: dict) -> list[tuple[Path, dict]]:
    return [
        (landing_dir / "events" / date / f["file"], f)
        for f in manifest["files"]
        if "day_fault" not in f
    ]


# --- determinism ---------------------------------------------------------------------------


def test_same_arguments_give_identical_bytes(tmp_path):
    config = small_config(days=3)
    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    first, second = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert first.keys() == second.keys() and len(first) > 10
    assert first == second


def test_split_generation_equals_one_shot(tmp_path):
    config = small_config(days=7, users_missing_column_days=(5,))
    generate(config, tmp_path / "once")
    generate(config.with_days(0, 4), tmp_path / "split")
    generate(config.with_days(4, 3), tmp_path / "split")
    once, split = all_files(tmp_path / "once"), all_files(tmp_path / "split")
    assert once.keys() == split.keys()
    differing = [name for name in once if once[name] != split[name]]
    assert differing == []


def test_different_seed_gives_different_events(tmp_path):
    generate(small_config(days=1, seed=1), tmp_path / "a")
    generate(small_config(days=1, seed=2), tmp_path / "b")
    a = all_files(tmp_path / "a" / "landing" / "events")
    b = all_files(tmp_path / "b" / "landing" / "events")
    assert a != b


# --- landing contract, faults and manifest -------------------------------------------------


def test_every_fault_kind_is_where_the_manifest_says(landing):
    _config, root = landing
    for date, manifest in manifests(root).items():
        arrival = dt.date.fromisoformat(date)
        per_kind = Counter()
        for path, entry in regular_files(root, date, manifest):
            lines = read_lines(path)
            assert len(lines) == entry["lines"]
            faulty = {}
            for kind, record in entry["faults"].items():
                assert record["count"] == len(record["lines"])
                per_kind[kind] += record["count"]
                for number in record["lines"]:
                    faulty[number] = kind
            for number, line in enumerate(lines, start=1):
                kind = faulty.get(number)
                problem = contract_problem(line, arrival)
                if kind in INVALID_KINDS:
                    assert problem is not None, (path.name, number, kind, line)
                else:
                    assert problem is None, (path.name, number, kind, problem, line)
                if kind == "duplicate_line":
                    assert line == lines[number - 2]
                if kind == "extra_fields":
                    assert set(json.loads(line)) - {
                        "event_id", "user_id", "event_type", "event_time", "product_id",
                        "amount", "quantity", "device", "session_id",
                    }  # fmt: skip
                if kind == "invalid_utf8":
                    with pytest.raises(UnicodeDecodeError):
                        line.decode("utf-8")
                if kind == "future_timestamp":
                    when = parse_utc(json.loads(line)["event_time"])
                    end = dt.datetime.combine(arrival + dt.timedelta(days=3), dt.time(), dt.UTC)
                    assert when >= end
                if kind == "negative_amount":
                    record = json.loads(line)
                    assert record["event_type"] == "purchase" and record["amount"] < 0
        assert manifest["totals"]["lines"] >= 2000
        assert all(per_kind[kind] >= 1 for kind in FAULT_KINDS), (date, per_kind)
        assert dict(per_kind) == manifest["totals"]["faults"]


def test_no_faults_when_the_rate_is_zero(tmp_path):
    generate(small_config(days=3, fault_rate=0.0), tmp_path)
    root = tmp_path / "landing"
    for date, manifest in manifests(root).items():
        assert sum(manifest["totals"]["faults"].values()) == 0
        for path, _ in regular_files(root, date, manifest):
            for line in read_lines(path):
                assert contract_problem(line, dt.date.fromisoformat(date)) is None, line


def test_valid_lines_vary_their_spelling_but_keep_the_instant(landing):
    _, root = landing
    offsets, spellings, with_quantity = Counter(), Counter(), Counter()
    for path in sorted((root / "events").rglob("*.jsonl")):
        for line in read_lines(path):
            if contract_problem(line, dt.date(2030, 1, 1)) is not None:
                continue
            record = json.loads(line)
            time = record["event_time"]
            offsets["Z" if time.endswith("Z") else time[-6:]] += 1
            spellings[record["event_type"]] += 1
            with_quantity["quantity" in record] += 1
    assert {"Z", "+00:00", "-05:00", "+05:30"} <= set(offsets)
    assert any(s != s.lower() for s in spellings) and "view" in spellings
    assert with_quantity[True] and with_quantity[False]


def test_event_ids_are_unique_except_redeliveries_and_duplicate_lines(landing):
    _, root = landing
    seen: dict[str, tuple[str, bytes]] = {}
    repeats = 0
    for date, manifest in manifests(root).items():
        for path, entry in regular_files(root, date, manifest):
            allowed = set(entry["redelivered"]["lines"]) | set(
                entry["faults"]["duplicate_line"]["lines"]
            )
            for number, line in enumerate(read_lines(path), start=1):
                try:
                    event_id = json.loads(line)["event_id"]
                except (ValueError, KeyError):
                    continue
                if event_id in seen:
                    assert number in allowed, (path.name, number)
                    repeats += 1
                else:
                    seen[event_id] = (date, line)
    assert repeats > 0


def test_redelivered_lines_repeat_an_earlier_days_line_verbatim(landing):
    _, root = landing
    first_seen: dict[str, tuple[dt.date, bytes]] = {}
    checked = 0
    for date, manifest in manifests(root).items():
        arrival = dt.date.fromisoformat(date)
        for path, entry in regular_files(root, date, manifest):
            lines = read_lines(path)
            for number in entry["redelivered"]["lines"]:
                line = lines[number - 1]
                original_day, original = first_seen[json.loads(line)["event_id"]]
                assert original == line
                assert 1 <= (arrival - original_day).days <= 3
                checked += 1
            for line in lines:
                try:
                    first_seen.setdefault(json.loads(line)["event_id"], (arrival, line))
                except (ValueError, KeyError):
                    pass
    total = sum(m["totals"]["redelivered"] for m in manifests(root).values())
    assert checked == total > 0


def test_late_events_are_late_and_the_rest_are_on_time(landing):
    _, root = landing
    for date, manifest in manifests(root).items():
        arrival = dt.date.fromisoformat(date)
        late = 0
        redelivered = manifest["totals"]["redelivered"]
        for path, entry in regular_files(root, date, manifest):
            bad = {n for f in entry["faults"].values() for n in f["lines"]}
            for number, line in enumerate(read_lines(path), start=1):
                if number in bad:
                    continue
                day = parse_utc(json.loads(line)["event_time"]).date()
                assert day <= arrival
                if day < arrival:
                    assert (arrival - day).days <= 3
                    late += 1
        assert late == manifest["totals"]["late"] + redelivered
        if manifest["day_index"] > 0:
            assert manifest["totals"]["late"] > 0


def test_sessions_follow_the_funnel(landing):
    _, root = landing
    path = root / "events" / START.isoformat()
    by_session = defaultdict(list)
    for file in sorted(path.glob("*.jsonl")):
        for line in read_lines(file):
            if contract_problem(line, START) is None:
                record = json.loads(line)
                if record["session_id"]:
                    by_session[record["session_id"]].append(record)
    purchases = 0
    for events in by_session.values():
        events.sort(key=lambda r: parse_utc(r["event_time"]))
        carted = set()
        assert len({e["user_id"] for e in events}) == 1
        for event in events:
            kind = event["event_type"].lower()
            if kind == "add_to_cart":
                carted.add(event["product_id"])
            if kind == "purchase":
                assert event["product_id"] in carted
                purchases += 1
    assert purchases > 20


def test_day_level_faults(landing):
    config, root = landing
    days = manifests(root)
    empty_day = config.date_of(2).isoformat()
    empty = [f for f in days[empty_day]["files"] if f.get("day_fault") == "empty_file"]
    assert len(empty) == 1 and (root / "events" / empty_day / empty[0]["file"]).stat().st_size == 0

    cut_day = config.date_of(3).isoformat()
    (cut,) = [f for f in days[cut_day]["files"] if f.get("day_fault") == "truncated_gzip"]
    raw = (root / "events" / cut_day / cut["file"]).read_bytes()
    with pytest.raises(EOFError):
        gzip.decompress(raw)
    readable = zlib.decompressobj(31).decompress(raw)
    assert readable.count(b"\n") == cut["complete_lines_readable"] < cut["lines_before_truncation"]

    missing_day = config.date_of(4).isoformat()
    users = pl.read_csv(root / "users" / missing_day / "users.csv")
    assert "plan" not in users.columns and days[missing_day]["day_faults"]["users_missing_column"]
    normal = pl.read_csv(root / "users" / config.date_of(3).isoformat() / "users.csv")
    assert normal.columns == [
        "user_id", "signup_date", "country", "birth_year", "marketing_opt_in", "plan"
    ]  # fmt: skip


# --- snapshots and realism -----------------------------------------------------------------


def test_snapshots_follow_the_contract_and_change_day_to_day(landing):
    config, root = landing
    first = pl.read_csv(
        root / "users" / config.date_of(0).isoformat() / "users.csv", try_parse_dates=True
    )
    last = pl.read_csv(
        root / "users" / config.date_of(5).isoformat() / "users.csv", try_parse_dates=True
    )
    assert first["user_id"].is_unique().all() and last["user_id"].is_unique().all()
    assert first["country"].str.contains(r"^[A-Z]{2}$").all()
    assert set(last["plan"].unique()) <= {"free", "plus", "pro"}
    assert last.schema["marketing_opt_in"] == pl.Boolean
    assert last.height > first.height
    new_users = last.join(first, on="user_id", how="anti")
    assert (new_users["signup_date"] > START - dt.timedelta(days=1)).all()
    joined = first.join(last, on="user_id", suffix="_later")
    assert (joined["plan"] != joined["plan_later"]).sum() + (
        joined["marketing_opt_in"] != joined["marketing_opt_in_later"]
    ).sum() > 0

    products_first = pl.read_csv(root / "products" / config.date_of(0).isoformat() / "products.csv")
    products_last = pl.read_csv(root / "products" / config.date_of(5).isoformat() / "products.csv")
    assert (products_last["list_price"] >= 0).all() and products_last[
        "product_id"
    ].is_unique().all()
    assert 8 <= products_first["category"].n_unique() <= 12
    repriced = products_first.join(products_last, on="product_id", suffix="_later")
    assert (repriced["list_price"] != repriced["list_price_later"]).sum() > 0
    changes = manifests(root)[config.date_of(5).isoformat()]["population"]
    assert changes["users"] == last.height and changes["products"] == products_last.height


def test_events_only_after_signup_and_weekends_busier(tmp_path):
    config = small_config(days=14, events_per_day=1500, fault_rate=0.0)
    generate(config, tmp_path)
    root = tmp_path / "landing"
    last = pl.read_csv(
        root / "users" / config.date_of(13).isoformat() / "users.csv", try_parse_dates=True
    )
    signup = dict(zip(last["user_id"], last["signup_date"]))
    weekday, weekend = [], []
    for date, manifest in manifests(root).items():
        (weekend if dt.date.fromisoformat(date).weekday() >= 5 else weekday).append(
            manifest["events_target"]
        )
        for path, _ in regular_files(root, date, manifest):
            for line in read_lines(path):
                record = json.loads(line)
                assert parse_utc(record["event_time"]).date() >= signup[record["user_id"]]
    assert np.mean(weekend) > 1.1 * np.mean(weekday)


def purchases_per_user(root: Path, days: list[dt.date]) -> Counter:
    """Valid purchases per user with event_time on the given days (any arrival folder)."""
    wanted = set(days)
    counts: Counter = Counter()
    seen = set()
    for path in sorted((root / "events").rglob("*.jsonl*")):
        for line in read_lines(path):
            try:
                record = json.loads(line)
                when = parse_utc(record["event_time"]).date()
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if (
                str(record.get("event_type")).lower() == "purchase"
                and when in wanted
                and record["event_id"] not in seen
            ):
                seen.add(record["event_id"])
                counts[record["user_id"]] += 1
    return counts


def test_labels_are_learnable_from_hidden_propensity_and_past_behaviour(tmp_path):
    config = small_config(days=17, users=600, events_per_day=2400, fault_rate=0.0)
    generate(config, tmp_path)
    root = tmp_path / "landing"
    week1 = purchases_per_user(root, [config.date_of(i) for i in range(7)])
    week2 = purchases_per_user(root, [config.date_of(i) for i in range(7, 14)])
    traits = hidden_user_traits(config, 6)
    users = traits["user_id"].to_list()
    later = np.array([week2[u] for u in users])
    earlier = np.array([week1[u] for u in users])
    by_propensity = spearmanr(traits["expected_purchases"].to_numpy(), later).statistic
    by_history = spearmanr(earlier, later).statistic
    assert by_propensity > 0.3, by_propensity
    assert by_history > 0.2, by_history
    label_rate = float((later > 0).mean())
    assert 0.1 < label_rate < 0.7, label_rate


# --- drift ---------------------------------------------------------------------------------


def day_records(root: Path, date: dt.date) -> list[dict]:
    out = []
    for path in sorted((root / "events" / date.isoformat()).glob("*.jsonl*")):
        for line in read_lines(path):
            if contract_problem(line, date) is None:
                out.append(json.loads(line))
    return out


def test_drift_knobs_move_the_distributions_they_claim(tmp_path):
    base = small_config(days=3, events_per_day=6000, users=800, fault_rate=0.0)
    drift_start = base.date_of(1)
    covariate = DriftSettings.preset("covariate", drift_start)
    concept = DriftSettings(start=drift_start, propensity=0.3)
    generate(base, tmp_path / "none")
    generate(SynthConfig(**{**base.__dict__, "drift": covariate}), tmp_path / "cov")
    generate(SynthConfig(**{**base.__dict__, "drift": concept}), tmp_path / "con")

    def shares(run: str, date: dt.date) -> dict:
        records = day_records(tmp_path / run / "landing", date)
        on_day = [r for r in records if parse_utc(r["event_time"]).date() == date]
        devices = Counter(r["device"] for r in on_day)
        kinds = Counter(r["event_type"].lower() for r in on_day)
        return {
            "web": devices["web"] / len(on_day),
            "purchase": kinds["purchase"] / max(kinds["add_to_cart"], 1),
        }

    before, after = base.date_of(0), base.date_of(2)
    # before the start nothing differs at all
    assert all_files(tmp_path / "none" / "landing" / "events" / before.isoformat()) == all_files(
        tmp_path / "cov" / "landing" / "events" / before.isoformat()
    )
    assert shares("cov", after)["web"] < shares("none", after)["web"] - 0.1
    assert shares("con", after)["purchase"] < 0.6 * shares("none", after)["purchase"]

    prices_none = pl.read_csv(
        tmp_path / "none" / "landing" / "products" / after.isoformat() / "products.csv"
    )
    prices_cov = pl.read_csv(
        tmp_path / "cov" / "landing" / "products" / after.isoformat() / "products.csv"
    )
    ratio = prices_cov["list_price"].sum() / prices_none["list_price"].sum()
    assert ratio == pytest.approx(1.25, rel=0.01)

    favoured = {CATEGORY_NAMES[i] for i in favoured_categories(base.seed)}
    categories = dict(zip(prices_none["product_id"], prices_none["category"]))

    def favoured_share(run: str) -> float:
        views = [
            r
            for r in day_records(tmp_path / run / "landing", after)
            if r["event_type"].lower() == "view"
        ]
        return np.mean([categories[v["product_id"]] in favoured for v in views])

    assert favoured_share("cov") > favoured_share("none") + 0.15
    manifest = json.loads(
        (tmp_path / "cov" / "landing" / "_manifest" / f"{after}.json").read_text()
    )
    assert manifest["drift"]["active"] and manifest["drift"]["price_level"] == 1.25
    manifest = json.loads(
        (tmp_path / "cov" / "landing" / "_manifest" / f"{before}.json").read_text()
    )
    assert not manifest["drift"]["active"]


# --- CLI and config ------------------------------------------------------------------------


def test_cli_writes_the_landing_contract_and_prints_a_summary(tmp_path, capsys):
    code = main(
        [
            "--data-dir", str(tmp_path), "--start", "2025-02-01", "--days", "2",
            "--users", "200", "--events-per-day", "800", "--seed", "3",
            "--drift", "covariate", "--drift-start", "2025-02-02", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0 and capsys.readouterr().out == ""
    assert (tmp_path / "landing" / "events" / "2025-02-02").is_dir()
    assert (tmp_path / "landing" / "users" / "2025-02-01" / "users.csv").is_file()
    main(["--data-dir", str(tmp_path / "b"), "--start", "2025-02-01", "--users", "50",
          "--events-per-day", "100", "--empty-file-day", "2025-02-01"])  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith("refinery-synth: 1 day(s) 2025-02-01") and "event lines" in out


def test_cli_rejects_drift_without_a_start(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--start", "2025-01-01", "--drift", "concept"])
    assert exit_info.value.code == 2
    assert "--drift-start" in capsys.readouterr().err


def test_config_errors_say_what_to_fix():
    with pytest.raises(ValueError, match="days must be >= 1"):
        SynthConfig(start="2025-01-01", days=0)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        SynthConfig(start="01/02/2025")
    with pytest.raises(ValueError, match=r"device_mix is a share"):
        DriftSettings(start="2025-01-01", device_mix=1.5)


# --- the line renderer ---------------------------------------------------------------------


def test_renderer_matches_python_formatting():
    rng = np.random.default_rng(0)
    n = 5000
    cents = rng.integers(0, 10**9, n) // rng.integers(1, 10**6, n)
    number = rng.integers(0, 10**7, n)
    codes = rng.integers(0, 3, n)
    present = rng.random(n) < 0.3
    table = Table((b"a", b"bbbbbb", b"cc"))
    lines = render(
        (
            Lit(b"["),
            Digits(number, 7),
            Lit(b"|"),
            Lut(codes, table),
            Optional(present, (Lit(b"<"), Cents(cents), Lit(b">"))),
            Optional(~present, (Lit(b"-"),)),
            Lit(b"]\n"),
        ),
        n,
    )
    for i in range(n):
        tail = f"<{cents[i] // 100}.{cents[i] % 100:02d}>" if present[i] else "-"
        expected = f"[{number[i]:07d}|{table.entries[codes[i]].decode()}{tail}]\n".encode()
        assert lines.line(i) == expected


def test_windowed_day_is_the_whole_day_merged_and_sorted(monkeypatch):
    """A day is merged one arrival-time window at a time from its packed stream parts; the
    windows laid end to end must be exactly the day merged in one go (rows, order, dtypes)."""
    import importlib

    from refinery.synth import sessions

    gen = importlib.import_module("refinery.synth.generate")  # the module, not the function
    from refinery.synth.world import states_through

    monkeypatch.setattr(sessions, "SESSIONS_PER_PART", 150)  # several parts per stream
    config = small_config(days=5)
    states = {s.day_index: s for s in states_through(config, 4)}

    def merged_in_one_go(day: int) -> sessions.EventBatch:
        def stream(source, name, delivery, share):
            n = gen._sessions(config, source, share)
            return sessions.simulate_stream_parts(config, states[source], name, n, delivery)

        batches = [
            stream(day, "bulk", "on_time", gen.BULK_SHARE),
            stream(day, "resend", "resend", gen.RESEND_SHARE),
        ]
        for source in range(max(0, day - gen.MAX_LATENESS_DAYS), day):
            late = stream(source, "late", "late", gen.LATE_SHARE)
            batches.append(late.take(late["arrival_day"] == day))
            copies = stream(source, "resend", "resend", gen.RESEND_SHARE)
            copies = copies.take(copies["resend_day"] == day)
            copies.columns["arrival_day"] = copies.columns.pop("resend_day")
            copies.columns["arrival_ms"] = copies.columns.pop("resend_ms")
            copies.columns["origin"] = np.full(len(copies), sessions.REDELIVERED, np.int8)
            batches.append(copies)
        events = sessions.EventBatch.concat(batches)
        return events.take(np.argsort(events["arrival_ms"], kind="stable"))

    for window_rows in (10**9, 700, 97):
        monkeypatch.setattr(gen, "WINDOW_ROWS", window_rows)
        for day in (0, 4):
            expected = merged_in_one_go(day)
            got = gen.assemble_day(config, states, day)
            assert set(got.columns) == set(expected.columns)
            for name, values in expected.columns.items():
                assert got[name].dtype == values.dtype, name
                assert np.array_equal(got[name], values), (window_rows, day, name)


def test_window_size_does_not_change_the_bytes(tmp_path, monkeypatch):
    import importlib

    from refinery.synth import sessions

    gen = importlib.import_module("refinery.synth.generate")  # the module, not the function

    monkeypatch.setattr(sessions, "SESSIONS_PER_PART", 200)
    config = small_config(days=4, first_day=0, fault_rate=0.01, truncated_gzip_days=(3,))
    generate(config, tmp_path / "whole")
    monkeypatch.setattr(gen, "WINDOW_ROWS", 333)
    generate(config, tmp_path / "windowed")
    assert all_files(tmp_path / "whole") == all_files(tmp_path / "windowed")


def test_chunked_rendering_and_parallel_gzip_do_not_change_the_content(tmp_path, monkeypatch):
    """Big days are rendered and deflated in chunks; small chunks must give the same lines."""
    from refinery.synth import writer

    config = small_config(days=3, first_day=0)  # day index 2 is a gzip day
    generate(config, tmp_path / "whole")
    monkeypatch.setattr(writer, "RENDER_CHUNK_ROWS", 300)
    generate(config, tmp_path / "chunked")
    whole = tmp_path / "whole" / "landing"
    chunked = tmp_path / "chunked" / "landing"
    names = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert any(str(n).endswith(".gz") for n in names)
    for name in names:
        a, b = whole / name, chunked / name
        if name.suffix == ".gz":
            assert gzip.decompress(a.read_bytes()) == gzip.decompress(b.read_bytes())
        elif name.parent.name != "_manifest":
            assert a.read_bytes() == b.read_bytes(), name
        else:
            ma, mb = json.loads(a.read_text()), json.loads(b.read_text())
            for entry in ma["files"] + mb["files"]:
                entry.pop("bytes")
            assert ma == mb
