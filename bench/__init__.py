"""Benchmarks: served throughput as ratios to in-process baselines measured in the same run."""
