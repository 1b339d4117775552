"""Where silver/events' peak memory comes from: one silver run of a landed, bronze-built day, with
the process's peak RSS printed before and after each stage of `write_silver_events` and the
checks (`ru_maxrss`, a high-water mark: a stage that raises it is where memory grew).

    bench/scale_day.sh 8000000 80000 /tmp/mem      # a 7.1M-event day (bronze, silver, gold)
    REFINERY_DATA_DIR=/tmp/mem/data DAGSTER_HOME=/tmp/mem/home \\
        uv run python -m bench.silver_memory --partition 2025-01-01
"""

from __future__ import annotations

import argparse
import functools
import resource
import time

STAGES = (
    "split_events",
    "prior_rows",
    "keep_first_arrivals",
    "duplicate_fates",
    "write_silver_events",
    "quality_metadata",
    "contract_check",
    "quarantine_rate_check",
    "conflict_check",
)


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def traced(name: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        before, started = peak_gb(), time.perf_counter()
        result = function(*args, **kwargs)
        print(
            f"{name:24s} peak {before:5.2f} -> {peak_gb():5.2f} GB  {time.perf_counter() - started:5.1f} s",
            flush=True,
        )
        return result

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partition", required=True)
    args = parser.parse_args()
    import refinery.assets.silver.assets as silver

    for name in STAGES:
        setattr(silver, name, traced(name, getattr(silver, name)))
    from dagster import AssetKey, DagsterInstance

    from refinery.definitions import defs

    result = defs.resolve_job_def("ingest_job").execute_in_process(
        instance=DagsterInstance.get(),
        asset_selection=[AssetKey(["silver", "events"])],
        partition_key=args.partition,
        raise_on_error=False,
    )
    print(f"success={result.success} peak {peak_gb():.2f} GB")


if __name__ == "__main__":
    main()
