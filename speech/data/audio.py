"""Audio I/O through soundfile: checks that classify bad files, and 16 kHz mono conversion.

``check_audio`` decodes a whole file, so a truncated FLAC (its header promises more frames
than the stream holds) is caught here and not in the middle of a training run.
"""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000

#: reasons for which ``bsd prepare`` skips (and lists) a file instead of failing
SKIP_REASONS = ("empty", "unreadable", "truncated")
#: the reason listed for a file under a subset folder that is neither FLAC audio nor a transcript
NOT_AUDIO = "not-flac"


class AudioError(Exception):
    """A file that cannot be used; ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, path: Path, reason: str, detail: str = ""):
        super().__init__(f"{path}: {reason}{': ' + detail if detail else ''}")
        self.path = path
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int


def _wav_declared_frames(path: Path) -> int | None:
    """Frames the RIFF ``data`` chunk declares (libsndfile silently shortens truncated WAVs)."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                block_align = struct.unpack("<H", fmt[12:14])[0]
            elif cid == b"data":
                return size // block_align if block_align else None
            else:
                f.seek(size + (size & 1), 1)


def check_audio(path: Path) -> AudioInfo:
    """Open and fully decode ``path``; raise :class:`AudioError` if it is empty, unreadable
    or truncated."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise AudioError(path, "empty", "zero-byte file")
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as e:
        raise AudioError(path, "unreadable", str(e).strip()) from None
    if info.frames == 0:
        raise AudioError(path, "empty", "no audio frames")
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        raise AudioError(path, "truncated", str(e).strip()) from None
    declared = _wav_declared_frames(path) if info.format == "WAV" else info.frames
    if declared is not None and data.shape[0] < declared:
        raise AudioError(path, "truncated", f"decoded {data.shape[0]} of {declared} frames")
    return AudioInfo(info.samplerate, info.channels, data.shape[0])


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """``(samples × channels float32, sample rate)``."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data, rate


def to_mono_16k(data: np.ndarray, rate: int) -> np.ndarray:
    """Average channels and resample to 16 kHz (torchaudio's band-limited sinc resampler)."""
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate == SAMPLE_RATE:
        return mono.astype(np.float32)
    return AF.resample(torch.from_numpy(mono.copy()), rate, SAMPLE_RATE).numpy().astype(np.float32)


def load_waveform(path: Path) -> torch.Tensor:
    """A prepared (16 kHz mono) file as a 1-D float32 tensor."""
    data, rate = read_audio(path)
    if rate != SAMPLE_RATE or data.shape[1] != 1:
        raise ValueError(f"{path}: expected 16 kHz mono, got {rate} Hz × {data.shape[1]} channels; re-run bsd prepare")
    return torch.from_numpy(data[:, 0])
