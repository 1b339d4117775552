"""`refinery-synth`: write realistic landing data (events, users, products) for refinery."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from refinery.resources.lake import data_dir_from_env
from refinery.synth.config import DRIFT_PRESETS, DriftSettings, SynthConfig, parse_date
from refinery.synth.generate import generate

EXAMPLES = """\
examples:
  refinery-synth --start 2025-01-01 --days 35 --users 3000 --events-per-day 20000
  refinery-synth --start 2025-01-01 --days 5 --first-day 30 --users 3000 --events-per-day 20000
      (days 30..34 of the same world: identical to generating 0..34 in one go)
  refinery-synth --start 2025-01-01 --days 42 --drift both --drift-start 2025-01-29
  refinery-synth --start 2025-01-01 --days 1 --events-per-day 10000000 --users 1000000

Label rate ("purchase in the next 7 days") grows with events per user: about 2-6 events per
user per day gives a learnable 15-45% positive rate. Every arrival day also gets
landing/_manifest/<date>.json: the ground truth of what was written (faults and their line
numbers, late and re-delivered events, drift in force).
"""


def _day(value: str) -> str:
    """A day given as an index relative to --start or as YYYY-MM-DD (resolved later)."""
    value = value.strip()
    if value.lstrip("-").isdigit():
        return value
    parse_date(value)
    return value


def _resolve_days(values: list[str] | None, start: dt.date, flag: str) -> tuple[int, ...]:
    days = []
    for value in values or []:
        if value.lstrip("-").isdigit():
            index = int(value)
        else:
            index = (parse_date(value) - start).days
        if index < 0:
            raise SystemExit(f"refinery-synth: error: {flag} {value} is before --start {start}")
        days.append(index)
    return tuple(days)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refinery-synth",
        description=(
            "Generate realistic e-commerce landing data for refinery: JSONL events (some "
            "gzipped) with late arrivals, re-deliveries and injected faults, plus daily CRM "
            "(users.csv) and catalogue (products.csv) snapshots. Same arguments, same bytes."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("what to generate")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data root; files go to DIR/landing/... (default: $REFINERY_DATA_DIR or ./data)",
    )
    run.add_argument("--start", required=True, help="date of day 0, YYYY-MM-DD")
    run.add_argument("--days", type=int, default=1, help="number of arrival days (default 1)")
    run.add_argument(
        "--first-day",
        type=int,
        default=0,
        help="generate day indices K..K+days-1 relative to --start (default 0)",
    )
    run.add_argument("--users", type=int, default=1000, help="users on day 0 (default 1000)")
    run.add_argument("--products", type=int, default=400, help="products on day 0 (default 400)")
    run.add_argument(
        "--events-per-day",
        type=int,
        default=10_000,
        help="mean events a day; weekends are busier (default 10000)",
    )
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")

    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--fault-rate",
        type=float,
        default=0.002,
        help="share of event lines carrying a fault, spread over every kind (default 0.002; "
        "0 disables). Days with >= 2000 events get every kind at least once",
    )
    faults.add_argument(
        "--empty-file-day",
        action="append",
        type=_day,
        metavar="DAY",
        help="also write an empty events file that day (index or YYYY-MM-DD; repeatable)",
    )
    faults.add_argument(
        "--truncated-gzip-day",
        action="append",
        type=_day,
        metavar="DAY",
        help="also write a gzip events file cut off mid-stream that day (repeatable)",
    )
    faults.add_argument(
        "--users-missing-column-day",
        action="append",
        type=_day,
        metavar="DAY",
        help="drop the plan column from that day's users.csv (repeatable)",
    )

    drift = parser.add_argument_group(
        "drift", "distribution shifts from --drift-start on (a preset, then any explicit knob)"
    )
    drift.add_argument("--drift-start", help="first arrival day with drift, YYYY-MM-DD")
    drift.add_argument(
        "--drift",
        choices=sorted(DRIFT_PRESETS),
        default="none",
        help="preset strengths: "
        + "; ".join(f"{k}: {v or 'no drift'}" for k, v in DRIFT_PRESETS.items()),
    )
    drift.add_argument(
        "--drift-device-mix", type=float, help="share of web sessions moved to ios/android (0..1)"
    )
    drift.add_argument(
        "--drift-price-level", type=float, help="multiplier on every list price and amount"
    )
    drift.add_argument(
        "--drift-category-mix",
        type=float,
        help="share of product views moved to 3 favoured categories (0..1)",
    )
    drift.add_argument(
        "--drift-propensity",
        type=float,
        help="multiplier on the purchase propensity (concept shift), e.g. 0.5",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    start = parse_date(args.start)
    knobs = {
        "device_mix": args.drift_device_mix,
        "price_level": args.drift_price_level,
        "category_mix": args.drift_category_mix,
        "propensity": args.drift_propensity,
    }
    overrides = {k: v for k, v in knobs.items() if v is not None}
    drift = DriftSettings.preset(args.drift, args.drift_start, **overrides)
    return SynthConfig(
        start=start,
        days=args.days,
        first_day=args.first_day,
        users=args.users,
        products=args.products,
        events_per_day=args.events_per_day,
        seed=args.seed,
        fault_rate=args.fault_rate,
        drift=drift,
        empty_file_days=_resolve_days(args.empty_file_day, start, "--empty-file-day"),
        truncated_gzip_days=_resolve_days(args.truncated_gzip_day, start, "--truncated-gzip-day"),
        users_missing_column_days=_resolve_days(
            args.users_missing_column_day, start, "--users-missing-column-day"
        ),
        show_progress=not args.quiet,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    data_dir = args.data_dir if args.data_dir is not None else data_dir_from_env()
    summary = generate(config, data_dir)
    if not args.quiet:
        faults = sum(summary["faults"].values())
        print(
            f"refinery-synth: {len(summary['dates'])} day(s) {summary['dates'][0]}.."
            f"{summary['dates'][-1]} -> {summary['data_dir']}/landing: "
            f"{summary['event_lines']:,} event lines in {summary['event_files']} files "
            f"({summary['event_bytes'] / 1e6:,.1f} MB), {faults:,} faulty, "
            f"{summary['late']:,} late, {summary['redelivered']:,} re-delivered; "
            f"{summary['users']:,} users, {summary['products']:,} products; "
            f"{summary['seconds']:.1f} s",
            file=sys.stdout,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
