"""Building blocks shared by the contracts: constraints as Polars expressions, Pandera from them."""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    nullable: bool
    description: str


@dataclass(frozen=True)
class Contract:
    """A table's columns and its row-level constraints (reason code -> expression, True = ok)."""

    name: str
    columns: tuple[Column, ...]
    constraints: dict[str, pl.Expr]
    unique: tuple[str, ...] = ()
    # strict: a column the contract does not declare fails validation (gold); silver tolerates
    # lineage and helper columns beside the declared ones
    strict: bool = False

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if not c.nullable]

    def first_violation(self) -> pl.Expr:
        """The reason code of the first constraint a row breaks, null when it breaks none."""
        expr = pl.lit(None, dtype=pl.String)
        for reason, ok in reversed(self.constraints.items()):
            expr = pl.when(ok.not_()).then(pl.lit(reason)).otherwise(expr)
        return expr

    def all_ok(self) -> pl.Expr:
        return pl.all_horizontal([ok.fill_null(False) for ok in self.constraints.values()])

    def pandera_schema(self) -> pa.DataFrameSchema:
        checks = [
            pa.Check(
                lambda data, ok=ok: data.lazyframe.select(ok.fill_null(False)),
                name=reason,
                error=f"rows breaking constraint {reason!r}",
            )
            for reason, ok in self.constraints.items()
        ]
        return pa.DataFrameSchema(
            {
                c.name: pa.Column(c.dtype, nullable=c.nullable, description=c.description)
                for c in self.columns
            },
            checks=checks,
            unique=list(self.unique) or None,
            name=self.name,
            strict=self.strict,
            coerce=False,
        )

    def dagster_table_schema(self):
        from dagster import TableColumn, TableColumnConstraints, TableSchema

        return TableSchema(
            columns=[
                TableColumn(
                    name=c.name,
                    type=str(c.dtype),
                    description=c.description,
                    constraints=TableColumnConstraints(
                        nullable=c.nullable, unique=(self.unique == (c.name,))
                    ),
                )
                for c in self.columns
            ]
        )


def is_in(column: str, allowed: tuple[str, ...]) -> pl.Expr:
    return pl.col(column).is_in(list(allowed))


UTC_US = pl.Datetime("us", "UTC")
