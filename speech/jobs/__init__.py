"""Speech jobs: ``bsd pretrain`` (task ``wav2vec2_pretrain``) and ``bsd evaluate speech``."""
