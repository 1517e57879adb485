"""Tests of genomics."""
