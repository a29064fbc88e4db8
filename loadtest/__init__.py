"""Benchmarks and load generators; each prints its figures and one JSON line."""
