"""Genomics data: reference genomes, GenomicBenchmarks tasks, pretraining datasets, baselines, synthetic default."""
