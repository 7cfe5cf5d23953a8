"""Benchmarks of the trunkstore engine against plain files and SQLite; run with ``pytest bench``."""
