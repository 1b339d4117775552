"""Gold contracts: what the marts promise their consumers, checked on the exported Parquet.

Feature columns are declared and documented in dbt (`dbt_project/models/marts/_marts.yml`); the
contract derives from the mart's own columns and adds the rules a model trainer relies on: keys
present and unique, labels binary, counts, amounts and ratios non-negative, shares in [0, 1].
"""

from __future__ import annotations

import polars as pl

from refinery.contracts.rules import Column, Contract

KEY = ("user_id", "as_of_date")


def _is_share(name: str) -> bool:
    # Conversion ratios (`*_rate_*`) may exceed 1: a purchase need not follow a logged cart.
    return name.startswith("share_")


def gold_contract(model: str, schema: pl.Schema) -> Contract:
    columns = [
        Column("user_id", pl.String(), False, "user"),
        Column("as_of_date", pl.Date(), False, "the day the row describes, knowing only what had arrived by its end"),
    ]
    constraints: dict[str, pl.Expr] = {}
    for name, dtype in schema.items():
        if name in KEY:
            continue
        if name == "label":
            columns.append(Column(name, dtype, False, "1 if the user purchases in D+1..D+7"))
            constraints["label_not_binary"] = pl.col(name).is_in([0, 1])
        elif dtype.is_numeric():
            columns.append(Column(name, dtype, True, f"feature {name}"))
            ok = pl.col(name).is_null() | (pl.col(name) >= 0)
            if _is_share(name):
                ok = pl.col(name).is_null() | pl.col(name).is_between(0, 1)
            constraints[f"{name}_out_of_range"] = ok
        else:
            columns.append(Column(name, dtype, True, f"feature {name}"))
    return Contract(name=f"gold_{model}", columns=tuple(columns), constraints=constraints, unique=KEY)
