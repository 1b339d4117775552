"""Render one or more bench results.json files as the Markdown tables of docs/BENCHMARKS.md.

uv run python -m bench.report /tmp/refinery-bench/*/results.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

STAGES = ("bronze", "silver", "gold", "training", "drift")


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def size_tables(size: dict) -> list[str]:
    runs = size["runs"]
    title = (
        f"\n#### {size['size']}: {size['users']:,} users, {size['events_per_day']:,} events/day, "
        f"knowledge dates {size['knowledge_dates']}, landing {size['landing_mb']} MB, "
        f"{len(runs)} repeat(s)\n"
    )
    out = [
        title,
        "| stage | seconds (median (min–max)) | peak RSS MB (max) | runs per stage |",
        "|---|---|---|---|",
    ]
    for stage in STAGES:
        measured = [r["stages"][stage] for r in runs if stage in r["stages"]]
        if not measured:
            continue
        out.append(
            f"| {stage} | {spread([m['seconds'] for m in measured])} | "
            f"{max(m['maxrss_mb'] for m in measured):.0f} | {measured[0]['runs']} |"
        )
    to_gold = [sum(r["stages"][s]["seconds"] for s in ("bronze", "silver", "gold")) for r in runs]
    floor = [r["floor"]["seconds"] for r in runs if r["floor"].get("seconds") is not None]
    out.append(f"| **bronze→gold** | {spread(to_gold)} | | |")
    out.append(
        f"| floor (floor.sql) | {spread(floor) if floor else runs[0]['floor'].get('status')} | "
        f"{max(r['floor']['maxrss_mb'] for r in runs):.0f} | 1 |"
    )
    pandas_ok = [r["pandas"] for r in runs if r["pandas"].get("status") == "ok"]
    if pandas_ok:
        out.append(
            f"| pandas way | {spread([p['seconds'] for p in pandas_ok])} | "
            f"{max(p['maxrss_mb'] for p in pandas_ok):.0f} | 1 |"
        )
    else:
        statuses = sorted({r["pandas"].get("status", "?") for r in runs})
        peak = max(r["pandas"]["maxrss_mb"] for r in runs)
        out.append(f"| pandas way | {', '.join(statuses)} | {peak:.0f} | 1 |")
    if len(floor) == len(to_gold):
        ratios = [t / f for t, f in zip(to_gold, floor, strict=True)]
        out.append(f"\nrefinery bronze→gold / floor: {spread(ratios)}×")
    else:
        out.append("\nrefinery bronze→gold / floor: no ratio (the floor did not finish)")
    if pandas_ok:
        pr = [
            r["pandas"]["seconds"] / t
            for r, t in zip(runs, to_gold, strict=True)
            if r["pandas"].get("status") == "ok"
        ]
        out[-1] += f"; pandas / refinery bronze→gold: {spread(pr)}× (< 1: pandas is faster)"
    equal = runs[0]["equal"]
    out.append(
        "\nEquality checked before timing: "
        + "; ".join(
            f"{who} = refinery on "
            + ", ".join(f"{m} ({c['rows']:,} rows × {c['columns']} columns)" for m, c in v.items())
            for who, v in equal.items()
        )
    )
    drift = size.get("drift_vs_evidently")
    if drift:
        out.append(
            f"\nDrift vs Evidently ({drift['features']} features, reference "
            f"{drift['reference_rows']:,} rows, current {drift['current_rows']:,} rows): "
            f"Evidently Report.run {drift['evidently_seconds']}, import "
            f"{drift['evidently_import_seconds']} s; refinery profile+compare "
            f"{drift['refinery_profile_and_compare_seconds']} s."
        )
        asset_run = runs[0]["stages"]["drift"]["seconds"]
        evidently = drift["evidently_seconds"]["default_like"]
        statistics_only = drift["refinery_profile_and_compare_seconds"]
        out.append(
            f"Evidently default-like `Report.run` / refinery's drift asset run ({asset_run:.2f} s, "
            f"read + compute + write + metadata): **{evidently / asset_run:.1f}×**; / the "
            f"statistics alone: {evidently / statistics_only:.0f}×."
        )
        for name, a in drift["agreement"].items():
            out.append(
                f"- {name}: {a['agree']}/{a['features']} agree ({a['agreement']:.0%}); drifted "
                f"refinery {a['refinery_drifted']}, Evidently {a['evidently_drifted']}; "
                f"disagree: {', '.join(a['disagree']) or 'none'}"
            )
    return out


def main() -> None:
    for path in sys.argv[1:]:
        results = json.loads(Path(path).read_text())
        print(f"\n### {path} ({results['date']}, {results['command']})")
        overhead = results["import_overhead"]
        print(
            f"\nimport overhead of a stage process: {overhead['import_seconds']:.1f} s import, "
            f"{overhead['process_seconds']:.1f} s process, {overhead['maxrss_mb']:.0f} MB"
        )
        for size in results.get("sizes", []):
            print("\n".join(size_tables(size)))
        for inc in results.get("incremental", []):
            added = ", ".join(
                f"{a['seconds']:.1f} s ({a['maxrss_mb']:.0f} MB)" for a in inc["added_days"]
            )
            print(
                f"\nadd a day to {inc['history_days']} days of history "
                f"({inc['events_per_day']:,} events/day): {added}"
            )


if __name__ == "__main__":
    main()
