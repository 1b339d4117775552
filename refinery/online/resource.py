"""The Dagster resource that says which online store the asset writes (and the server reads)."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from refinery.online.store import OnlineStore, open_store

STORE_ENV = "REFINERY_ONLINE_STORE"


class OnlineStoreResource(ConfigurableResource):
    """`sqlite` (default: <data root>/online/user_features.sqlite, no server needed) or a
    Redis URL such as `redis://127.0.0.1:6379/0`. Unset: $REFINERY_ONLINE_STORE, read when used."""

    url: str | None = Field(
        default=None, description="online store; default $REFINERY_ONLINE_STORE or 'sqlite'"
    )

    def store_url(self) -> str:
        return self.url or os.environ.get(STORE_ENV) or "sqlite"

    def open(self, data_root: Path, *, readonly: bool = False) -> OnlineStore:
        return open_store(self.store_url(), data_root, readonly=readonly)
