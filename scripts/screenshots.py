"""Screenshots of the Dagster UI over a small demo lake, taken in a real headless Chromium.

    uv run --with playwright python scripts/screenshots.py            # build once, then shoot
    uv run --with playwright python scripts/screenshots.py --rebuild  # from an empty data root

1. A small lake under `data/screenshots/` (its own `REFINERY_DATA_DIR` and `DAGSTER_HOME`):
   refinery-synth lands 61 days ending yesterday (300 users, 3,000 events a day, faults on);
   bronze and silver run one partition at a time through `ingest_job`, gold and the online
   store in one `--partition-range` run. A lake that is already built is reused; `--rebuild`
   starts over. Then, every time, `ml/training_dataset` and `ml/feature_drift_report` by the
   code as it is now (a 21-day window instead of 28, so 61 days of data suffice).
2. `dagster-webserver` on 127.0.0.1 (a free port) and `dagster-daemon` over that instance, with
   freshness evaluation enabled in it (every 5 s): the freshness states in the pictures are
   evaluated, not "Not evaluated". The daemon also ticks the sensors, as under `make dev`: they
   find nothing new to ingest and no drift to act on in this lake.
3. Playwright drives Debian's Chromium (`/usr/bin/chromium`, `--chromium`), dismisses the
   first-visit dialogs and saves PNGs to `docs/screenshots/` (`--out`).

Needs the `playwright` Python package (`--with playwright` above, or the dev dependency; no
browser download: the system Chromium is used) and Chromium (`apt-get install -y chromium`).
About 5 minutes on 2 cores the first time (the lake), 2 minutes after that.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from refinery.demo import gold_range_command

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 30 warm-up days (the 30-day features fill up) + a 21-day training window + 10 days until the
# newest window date's label is written
DAYS, USERS, EVENTS_PER_DAY, SEED = 61, 300, 3_000, 5
LAKE_ENV = {
    "REFINERY_TRAINING_WINDOW_DAYS": "21",
    "REFINERY_DRIFT_WINDOW_DAYS": "3",
    "REFINERY_LANDING_SETTLE_SECONDS": "0",
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]

VIEWPORT = {"width": 2000, "height": 1250}


def expand_graph(page) -> None:
    """Every group expanded (the graph's own shortcut, Alt+E), owners and freshness shown on
    each node (the node-facets menu, the second-lowest of the graph's bottom-right buttons)."""
    page.keyboard.press("Alt+e")
    page.wait_for_timeout(2500)
    corner = [
        b
        for b in page.locator("button").all()
        if (box := b.bounding_box())
        and box["x"] > VIEWPORT["width"] - 120
        and box["y"] > VIEWPORT["height"] - 200
    ]
    corner.sort(key=lambda b: b.bounding_box()["y"])
    if len(corner) >= 2:
        corner[-2].click()
        page.wait_for_timeout(500)
        for facet in ("Owner", "Freshness"):
            item = page.get_by_text(facet, exact=True)
            if item.count():
                item.first.click()
                page.wait_for_timeout(300)
        page.keyboard.press("Escape")
        page.wait_for_timeout(1500)


def scroll_to(text: str):
    def action(page) -> None:
        target = page.get_by_text(text, exact=True)
        if target.count():
            target.first.scroll_into_view_if_needed()
            page.wait_for_timeout(500)

    return action


def select_latest_partition(page) -> None:
    """Open the newest partition in the partition list, so its own materialization metadata
    and check results show (not "No partition selected")."""
    rows = [
        row
        for row in page.get_by_text(re.compile(r"^\d{4}-\d{2}-\d{2}$")).all()
        if (box := row.bounding_box()) and box["x"] < VIEWPORT["width"] * 0.35 and box["y"] > 300
    ]
    if rows:
        rows[0].click()
        page.wait_for_timeout(2500)


# (file name, path in the UI, what must be on the page first, what to do before the picture,
#  whole page or the window as it is)
PAGES = [
    ("asset-graph.png", "/asset-groups", "silver", expand_graph, False),
    (
        "silver-events-partitions.png",
        "/assets/silver/events?view=partitions",
        "Partitions",
        select_latest_partition,
        False,
    ),
    (
        "training-dataset-checks.png",
        "/assets/ml/training_dataset?view=checks",
        "split_label_rates",
        None,
        False,
    ),
    ("training-dataset-overview.png", "/assets/ml/training_dataset", "Columns", None, False),
    (
        "training-dataset-metadata.png",
        "/assets/ml/training_dataset?view=events",
        "splits",
        scroll_to("splits"),
        False,
    ),
    (
        "drift-report-checks.png",
        "/assets/ml/feature_drift_report?view=checks",
        "drift_verdict",
        None,
        False,
    ),
    (
        "drift-report-metadata.png",
        "/assets/ml/feature_drift_report?view=events",
        "verdict",
        None,
        False,
    ),
    (
        "user-daily-features-columns.png",
        "/assets/gold/user_daily_features",
        "Columns",
        scroll_to("Columns"),
        False,
    ),
]


def say(text: str) -> None:
    print(f"== {text}", flush=True)


def run(cmd: list[str], env: dict[str, str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO)


def lake_env(root: Path) -> dict[str, str]:
    home = root / "dagster_home"
    return {
        **os.environ,
        **LAKE_ENV,
        "REFINERY_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def write_instance_yaml(home: Path) -> None:
    """The repo's instance settings, plus freshness evaluation (the daemon's freshness loop
    is off unless the instance enables it)."""
    home.mkdir(parents=True, exist_ok=True)
    text = (REPO / "dagster_home" / "dagster.yaml").read_text()
    if "\nfreshness:" not in text:
        text += "freshness:\n  enabled: true\n"
    (home / "dagster.yaml").write_text(text)


def build_lake(root: Path) -> None:
    """Land, ingest, build gold, publish a training set and a drift report (once)."""
    env = lake_env(root)
    home = Path(env["DAGSTER_HOME"])
    write_instance_yaml(home)
    end = datetime.now(UTC).date() - timedelta(days=1)
    start = end - timedelta(days=DAYS - 1)
    say(f"refinery-synth: {DAYS} days {start}..{end} into {root}")
    run(
        [
            str(BIN / "refinery-synth"),
            "--data-dir",
            str(root),
            "--start",
            start.isoformat(),
            "--days",
            str(DAYS),
            "--users",
            str(USERS),
            "--events-per-day",
            str(EVENTS_PER_DAY),
            "--seed",
            str(SEED),
            "--fault-rate",
            "0.003",
            "--quiet",
        ],
        env,
    )
    say("bronze + silver, one ingest_job run per arrival date")
    script = (
        "import sys\n"
        "from datetime import date, timedelta\n"
        "from dagster import AssetKey, DagsterInstance\n"
        "from refinery.definitions import defs\n"
        "job = defs.resolve_job_def('ingest_job')\n"
        "keys = [AssetKey([l, t]) for l in ('bronze', 'silver') for t in ('events', 'users', 'products')]\n"
        "instance = DagsterInstance.get()\n"
        "start, days = date.fromisoformat(sys.argv[1]), int(sys.argv[2])\n"
        "for d in range(days):\n"
        "    p = (start + timedelta(days=d)).isoformat()\n"
        "    r = job.execute_in_process(partition_key=p, instance=instance, asset_selection=keys,\n"
        "        raise_on_error=False,\n"
        "        run_config={'loggers': {'console': {'config': {'log_level': 'WARNING'}}}})\n"
        "    print(p, 'ok' if r.success else 'FAILED', flush=True)\n"
    )
    run([sys.executable, "-c", script, start.isoformat(), str(DAYS)], env)
    say("gold + online store: one run over the range")
    run(gold_range_command(start, end, dagster=str(BIN / "dagster")), env)
    (root / ".screenshots-lake-ready").write_text(f"{start}..{end}\n")


def build_ml(root: Path) -> None:
    """The training set and the drift report, by the code as it is now (every run: seconds)."""
    for key in ("ml/training_dataset", "ml/feature_drift_report"):
        say(key)
        run(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "refinery.definitions",
                "--select",
                key,
            ],
            lake_env(root),
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the webserver exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


def dismiss_dialogs(page) -> None:
    """Close whatever first-visit dialog the UI shows (What's new, telemetry, tours)."""
    for _ in range(3):
        closed = False
        for label in ("Dismiss", "Got it", "Close", "No thanks", "Skip", "Done"):
            button = page.get_by_role("button", name=label, exact=True)
            if button.count() and button.first.is_visible():
                button.first.click()
                closed = True
                page.wait_for_timeout(300)
        if (
            page.locator("[role=dialog]").count()
            and page.locator("[role=dialog]").first.is_visible()
        ):
            page.keyboard.press("Escape")
            page.wait_for_timeout(300)
            closed = True
        if not closed:
            return


def screenshot(base: str, out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(base + "/", wait_until="networkidle")
        page.wait_for_timeout(1500)
        dismiss_dialogs(page)
        for name, path, expect, action, full_page in PAGES:
            page.goto(base + path, wait_until="networkidle")
            try:
                page.get_by_text(expect, exact=True).first.wait_for(timeout=30_000)
            except PlaywrightTimeout:
                print(f"  ! {path}: {expect!r} never appeared; the picture shows what did")
            page.wait_for_timeout(2000)
            dismiss_dialogs(page)
            if action is not None:
                action(page)
            target = out / name
            page.screenshot(path=str(target), full_page=full_page)
            print(f"  {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
            saved.append(target)
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "data" / "screenshots")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--rebuild", action="store_true", help="start from an empty data root")
    parser.add_argument("--build-only", action="store_true", help="build the lake up to gold")
    args = parser.parse_args(argv)
    root = args.data_dir.resolve()
    if args.rebuild and root.exists():
        shutil.rmtree(root)
    if not (root / ".screenshots-lake-ready").exists():
        if root.exists():
            shutil.rmtree(root)  # a half-built lake from an interrupted run
        build_lake(root)
    else:
        say(
            f"reusing the lake in {root} ({(root / '.screenshots-lake-ready').read_text().strip()})"
        )
    if args.build_only:
        return 0
    build_ml(root)
    if not Path(args.chromium).exists():
        raise SystemExit(f"no Chromium at {args.chromium}: apt-get install -y chromium")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    say(f"dagster-webserver on {base}")
    env = {**lake_env(root), "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5"}
    write_instance_yaml(Path(env["DAGSTER_HOME"]))
    log = (root / "webserver.log").open("w")
    processes = [
        subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                "-m",
                "refinery.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-m", "refinery.definitions"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        wait_http(base + "/server_info", processes[0])
        say("waiting 40 s for the daemon's first freshness evaluations")
        time.sleep(40)
        say(f"Chromium ({args.chromium}) → {args.out}")
        screenshot(base, args.out.resolve(), args.chromium)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
