"""Genomics jobs: ``bsd pretrain`` (HyenaDNA next-token, Caduceus masked LM) and
``bsd evaluate genomic-benchmarks`` (fine-tuning + test under the GB protocol)."""
