"""The Dagster resource that says which online store the asset writes (and the server reads)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from refinery import settings
from refinery.online.store import OnlineStore, open_store


class OnlineStoreResource(ConfigurableResource):
    """`sqlite` (default: <data root>/online/user_features.sqlite, no server needed) or a
    Redis URL such as `redis://127.0.0.1:6379/0`. Unset: $REFINERY_ONLINE_STORE, read when used."""

    url: str | None = Field(
        default=None, description="online store; default $REFINERY_ONLINE_STORE or 'sqlite'"
    )

    def store_url(self) -> str:
        return self.url or settings.ONLINE_STORE.get()

    def open(self, data_root: Path, *, readonly: bool = False) -> OnlineStore:
        return open_store(self.store_url(), data_root, readonly=readonly)
