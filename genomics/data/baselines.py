"""Reference losses for DNA pretraining: base frequencies and k-mer Markov models, in nats per base.

Models are fitted on the train split and scored on the valid split of a prepared genome. An order-k
model predicts a base from the k bases before it, with add-one (Laplace) smoothing; order 0 is the
unigram (base-frequency) model. ``baseline_kmer_order`` is the order with the lowest *validation*
loss (picked on the split it is scored on, so it is an optimistic reference). All orders are
scored on the same positions: bases (A/C/G/T) whose ``max_order`` predecessors in the same
interval are bases too. Long splits are subsampled to ``max_bases`` (whole intervals, seeded).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genomics.data.hg38 import PreparedGenome, open_genome
from genomics.tokenizer import A_ID, T_ID

_PIECE = 1 << 20


def _split_codes(prepared: PreparedGenome, split: str, gap: int, max_bases: int | None, seed: int) -> np.ndarray:
    """Bases of a split as int8 codes 0..3 (-1 = N), intervals separated by ``gap`` -1s."""
    sel = prepared.intervals.select(split)
    if len(sel) == 0:
        raise ValueError(f"{prepared.directory}: split {split!r} has no intervals")
    order = np.random.default_rng(seed).permutation(len(sel)) if max_bases else np.arange(len(sel))
    if max_bases:
        order = order[: max(1, int(np.searchsorted(np.cumsum((sel.end - sel.start)[order]), max_bases)) + 1)]
    pieces = []
    for k in np.sort(order):
        for lo in range(int(sel.start[k]), int(sel.end[k]), _PIECE):
            ids = prepared.genome.fetch_ids(str(sel.chrom[k]), lo, min(lo + _PIECE, int(sel.end[k])))
            pieces.append(np.where((ids >= A_ID) & (ids <= T_ID), ids.astype(np.int8) - A_ID, -1).astype(np.int8))
        pieces.append(np.full(gap, -1, dtype=np.int8))
    return np.concatenate(pieces)


def _contexts(codes: np.ndarray, max_order: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per order k, the context index of every scored position; the scored positions' bases."""
    valid = codes >= 0
    ok = valid.copy()
    for j in range(1, max_order + 1):  # the position and its max_order predecessors are all bases
        ok[j:] &= valid[:-j]
    ok[:max_order] = False
    pos = np.flatnonzero(ok)
    ctx = np.zeros(pos.size, dtype=np.int64)
    contexts = [ctx.copy()]
    for k in range(1, max_order + 1):
        ctx = ctx * 4 + codes[pos - k].astype(np.int64)
        contexts.append(ctx.copy())
    return contexts, codes[pos].astype(np.int64)


def markov_baselines(genome_dir: Path | str, max_order: int = 8, max_bases: int | None = 20_000_000, seed: int = 0
                     ) -> dict[str, float | int]:
    """``{"baseline_unigram_loss", "baseline_kmer_loss", "baseline_kmer_order"}`` (nats/base) plus ``"baseline_losses"`` per order."""
    prepared = open_genome(Path(genome_dir))
    train = _split_codes(prepared, "train", max_order, max_bases, seed)
    valid = _split_codes(prepared, "valid", max_order, max_bases, seed)
    train_ctx, train_base = _contexts(train, max_order)
    valid_ctx, valid_base = _contexts(valid, max_order)
    if valid_base.size == 0 or train_base.size == 0:
        raise ValueError(f"{genome_dir}: no scorable bases in train or valid")
    losses = []
    for k in range(max_order + 1):
        counts = np.bincount(train_ctx[k] * 4 + train_base, minlength=4 ** (k + 1)).reshape(-1, 4) + 1.0
        log_p = np.log(counts) - np.log(counts.sum(axis=1, keepdims=True))
        losses.append(float(-log_p[valid_ctx[k], valid_base].mean()))
    best = int(np.argmin(losses[1:])) + 1
    return {
        "baseline_unigram_loss": losses[0],
        "baseline_kmer_loss": losses[best],
        "baseline_kmer_order": best,
        "baseline_losses": {k: round(v, 5) for k, v in enumerate(losses)},
    }
