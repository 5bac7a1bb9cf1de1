"""Benchmarks for letters: read throughput, signing storm, size and memory.

Each module is one command (`python -m bench.read`, `bench.storm`, `bench.seed`, `bench.size`);
docs/benchmarks.md has the commands and the measured figures.
"""
