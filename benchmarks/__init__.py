"""GPU and CPU benchmarks: `python -m benchmarks.bench`, `python -m benchmarks.sqnr`, `python -m benchmarks.decode_bench`."""
