"""Benchmarks (`bsd bench kernel|models|data`): tables printed, JSON written; never timed tests."""
