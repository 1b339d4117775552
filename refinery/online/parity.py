"""Parity of what the API serves with the gold mart the training sets are cut from.

A sample of users is asked of the real FastAPI app (in-process, Starlette's TestClient) and each
answer is compared with the gold mart of the as-of date it states: same feature names, same
values, floats compared exactly (same type and ==, so 0.1 + 0.2 is not 0.3), and no newer mart
row for that user up to the store's watermark (the store must hold the latest vector).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from refinery.online.offline import NoFeaturesForDate, features_as_of
from refinery.online.records import mart_path
from refinery.online.server import MAX_BATCH, create_app
from refinery.online.store import OnlineStore


@dataclass
class ParityReport:
    sampled: list[str] = field(default_factory=list)
    compared_values: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No mismatch. An empty store (gold had no rows for any date applied yet) passes with
        nothing sampled: there is nothing served that could differ."""
        return not self.mismatches


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def check_parity(
    store: OnlineStore,
    gold_dir: Path,
    sample_size: int = 200,
    must_include: list[str] = (),
    seed: int | None = None,
) -> ParityReport:
    from fastapi.testclient import TestClient

    sampled = list(dict.fromkeys([*must_include, *store.sample_users(sample_size)]))
    if seed is not None:
        random.Random(seed).shuffle(sampled)
    report = ParityReport(sampled=sampled)
    if not sampled:
        return report
    watermark = store.meta().get("watermark")
    answers = []
    with TestClient(create_app(store, gold_dir)) as client:
        for start in range(0, len(sampled), MAX_BATCH):
            response = client.post(
                "/features", json={"user_ids": sampled[start : start + MAX_BATCH]}
            )
            if response.status_code != 200:
                report.mismatches.append(
                    {
                        "user_id": None,
                        "problem": f"API answered {response.status_code}: {response.text[:200]}",
                    }
                )
                return report
            answers.extend(response.json()["results"])
    for user, answer in zip(sampled, answers, strict=True):
        if not answer.get("known") or answer.get("user_id") != user:
            report.mismatches.append({"user_id": user, "problem": "stored but not served"})
            continue
        as_of = date.fromisoformat(answer["as_of_date"])
        try:
            offline = features_as_of(gold_dir, [user], as_of)[0]
        except NoFeaturesForDate:
            report.mismatches.append(
                {"user_id": user, "problem": f"gold has no mart for its as-of date {as_of}"}
            )
            continue
        if not offline["known"]:
            report.mismatches.append(
                {"user_id": user, "problem": f"no gold row on its as-of date {as_of}"}
            )
            continue
        served, expected = answer["features"], offline["features"]
        if list(served) != list(expected):
            report.mismatches.append(
                {
                    "user_id": user,
                    "problem": "feature names differ",
                    "served": list(served),
                    "gold": list(expected),
                }
            )
            continue
        for name, value in expected.items():
            report.compared_values += 1
            if not _same(served[name], value):
                report.mismatches.append(
                    {
                        "user_id": user,
                        "as_of_date": as_of.isoformat(),
                        "feature": name,
                        "served": served[name],
                        "gold": value,
                    }
                )
    if watermark:
        report.mismatches.extend(_newer_rows(gold_dir, answers, date.fromisoformat(watermark)))
    return report


def _newer_rows(gold_dir: Path, answers: list[dict], watermark: date) -> list[dict[str, Any]]:
    """Sampled users with a gold row newer than the one served (up to the watermark)."""
    served = {a["user_id"]: a["as_of_date"] for a in answers if a.get("known")}
    if not served:
        return []
    oldest = date.fromisoformat(min(served.values()))
    files = [
        mart_path(gold_dir, oldest + timedelta(days=d))
        for d in range(1, (watermark - oldest).days + 1)
    ]
    files = [f for f in files if f.exists()]
    if not files:
        return []
    rows = (
        pl.scan_parquet(files)
        .select("user_id", "as_of_date")
        .filter(pl.col("user_id").is_in(list(served)))
        .group_by("user_id")
        .agg(pl.col("as_of_date").max())
        .collect()
    )
    return [
        {"user_id": user, "problem": f"served as of {served[user]} but gold has {newest}"}
        for user, newest in rows.iter_rows()
        if newest.isoformat() > served[user]
    ]
