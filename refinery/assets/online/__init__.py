"""online/user_features: the gold feature mart's latest vector per user, in the online store."""

from refinery.assets.online.assets import (
    ONLINE_KEY,
    PARITY_CHECK,
    online_assets,
    online_user_features,
)

__all__ = ["ONLINE_KEY", "PARITY_CHECK", "online_assets", "online_user_features"]
