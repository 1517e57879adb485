"""Helpers for the speech tests: tiny audio files, LibriSpeech trees and a micro model."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

REAL_DATA = Path(os.environ.get("BSD_REAL_DATA", "../shared/data"))
REAL_LIBRISPEECH = REAL_DATA / "librispeech_sample" / "LibriSpeech"

#: a model small enough for a Lightning step in well under a second (overrides of model.*)
MICRO_MODEL = {
    "arch": "tiny", "num_layers": 2, "num_heads": 2, "ffn_dim": 64,
    "extractor_layers": [[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2], [32, 2, 2]],
    "model_dim": 48, "pos_conv_kernel_size": 8, "pos_conv_groups": 4, "final_dim": 16, "quantized_dim": 16,
    "codebook_entries": 8, "num_distractors": 5, "mask_span": 3,
}


def tone(seconds: float, rate: int = 16_000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A noisy tone, ``samples × channels`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.02 * rng.standard_normal(t.size)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def write_flac(path: Path, seconds: float = 1.0, rate: int = 16_000, channels: int = 1, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, rate, channels, seed), rate, format="FLAC")
    return path


def librispeech_tree(root: Path, subsets: dict[str, list[str]], utts: int = 2, seconds: float = 2.1,
                     transcripts: bool = True) -> Path:
    """``root/LibriSpeech/<subset>/<speaker>/<chapter>/...flac`` (+ trans.txt); returns the LibriSpeech folder."""
    ls = root / "LibriSpeech"
    for subset, speakers in subsets.items():
        for s, spk in enumerate(speakers):
            chapter = f"{int(spk) + 1000}"
            folder = ls / subset / spk / chapter
            lines = []
            for u in range(utts):
                name = f"{spk}-{chapter}-{u:04d}"
                write_flac(folder / f"{name}.flac", seconds + 0.1 * u, seed=s + u)
                lines.append(f"{name} HELLO WORLD {u}\n")
            if transcripts:
                (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    return ls
