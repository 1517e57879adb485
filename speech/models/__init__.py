"""fairseq2's wav2vec 2.0 built with LayerNorm or DyT."""
