"""driftline benchmarks: `make bench` runs them all; each also runs alone (python -m bench.<name>)."""
