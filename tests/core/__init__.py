"""Tests of bio_speech_dyt."""
