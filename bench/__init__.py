"""Benchmarks of refinery against the DuckDB engine floor, pandas and Evidently (`make bench`)."""
