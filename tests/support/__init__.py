"""Test helpers shared by the tests: toy task and domain, data writers, run helpers."""
