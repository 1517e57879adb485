"""LibriSpeech preparation, fairseq manifests, the audio dataset and the synthetic speech corpus."""
