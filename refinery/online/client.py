"""A small Python client of the feature-serving API.

from refinery.online.client import FeatureClient
client = FeatureClient("http://127.0.0.1:8000")
client.features(["u1", "u2"])                     # latest, from the online store
client.features(["u1", "u2"], as_of="2025-01-05")  # point in time, from the gold marts
"""

from __future__ import annotations

from datetime import date
from typing import Any, Self

import httpx

from refinery import settings
from refinery.online.server import DEFAULT_HOST, MAX_BATCH


class FeatureServiceError(RuntimeError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"feature service answered {status}: {detail}")
        self.status = status
        self.detail = detail


def default_url() -> str:
    return f"http://{DEFAULT_HOST}:{settings.SERVE_PORT.get()}"


class FeatureClient:
    def __init__(self, base_url: str | None = None, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url or default_url(), timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _json(self, response: httpx.Response, ok: tuple[int, ...] = (200,)) -> Any:
        if response.status_code not in ok:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise FeatureServiceError(response.status_code, str(detail))
        return response.json()

    def feature(self, user_id: str, as_of: date | str | None = None) -> dict[str, Any]:
        """One user's body; an unknown user comes back with known=False and null features."""
        params = {"as_of": str(as_of)} if as_of is not None else None
        response = self._http.get(f"/features/{user_id}", params=params)
        body = self._json(response, ok=(200, 404))
        if response.status_code == 404 and "known" not in body:
            raise FeatureServiceError(404, body.get("detail", ""))
        return body

    def features(self, user_ids: list[str], as_of: date | str | None = None) -> list[dict]:
        """Bodies of many users (any number: sent in batches of 1,000), in the order asked."""
        out: list[dict] = []
        for start in range(0, len(user_ids), MAX_BATCH):
            payload: dict[str, Any] = {"user_ids": list(user_ids[start : start + MAX_BATCH])}
            if as_of is not None:
                payload["as_of"] = str(as_of)
            out.extend(self._json(self._http.post("/features", json=payload))["results"])
        return out

    def schema(self) -> dict[str, Any]:
        return self._json(self._http.get("/schema"))

    def health(self) -> dict[str, Any]:
        return self._json(self._http.get("/health"))

    def metrics(self) -> dict[str, Any]:
        return self._json(self._http.get("/metrics"))


def features_as_of(
    user_ids: list[str], as_of: date | str, base_url: str | None = None
) -> list[dict[str, Any]]:
    """Features of these users as of date D (for backtests), through the API."""
    with FeatureClient(base_url) as client:
        return client.features(user_ids, as_of=as_of)
