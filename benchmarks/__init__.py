"""xmargin's benchmark suite and training demo (run as ``python -m benchmarks``)."""
