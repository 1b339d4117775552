"""Online features: the gold mart's latest vector per user in a key-value store, served over HTTP.

- `records`: one user's record, encoded once from a gold Parquet row (the only producer of values)
- `store`: the embedded SQLite store (default) and Redis (production), one interface
- `sync`: applies gold as-of dates to a store (incremental, idempotent, one transaction per run)
- `offline`: point-in-time lookups straight from the gold marts
- `server`: the FastAPI app (`python -m refinery.online.server`); `client`: a Python client
"""
