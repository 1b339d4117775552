"""The data contracts of each layer, defined once.

Each silver table's constraints live in one ordered mapping `reason -> polars expression that is
True for a valid row`. The silver transforms use it to give every rejected row its machine-readable
`quarantine_reason`; the Pandera schemas built from the same mapping validate the written Parquet in
the asset checks, and give the Dagster UI its column schema.
"""
