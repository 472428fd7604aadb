"""Data tools: `python -m tools.synthetic_parquet`, `python -m tools.parquet_shards`."""
