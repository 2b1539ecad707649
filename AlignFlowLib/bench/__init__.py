"""Benchmarks on real data (they read `../shared/data`; tests use phantom stand-ins laid out the same way)."""
