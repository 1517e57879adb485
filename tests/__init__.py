"""The test suite; its folders mirror the packages (core = bio_speech_dyt)."""
