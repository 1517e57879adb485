"""A procedural speech-like corpus in LibriSpeech layout (16 kHz FLAC) plus its manifests.

Not speech, but it has the structure wav2vec 2.0 learns from: a small phone inventory (6
vowels, 8 consonants), each with a consistent spectral shape (formant targets, noise band,
nasal murmur) and a typical duration; a corpus-wide lexicon of words built from consonant +
vowel syllables, drawn with Zipf frequencies, so that what a masked stretch holds is predictable
from its context (the rest of the word, frequent words); formant-shaped harmonic voicing with a
moving pitch contour, coarticulated formant transitions, pauses, and per-speaker timbre (pitch
range, vocal-tract length, spectral tilt, breathiness, speaking rate), with breath noise
in voiced stretches. Each utterance has a pseudo-transcript (the syllable letters).

There is deliberately no broadband noise floor: the extractor's first layer normalises each
channel over time (GroupNorm), so a band holding only a flat floor is scaled up to unit size and
the quantizer's codes become frame-random. Measured with one LibriSpeech-trained tiny model:
adjacent 20-ms frames share a code 19 % of the time on real LibriSpeech, 20 % here, and 5 %
(chance: 3 %) with a white floor even 50 dB under the peak. With a floor 28-40 dB under the peak
the demo model (configs/speech/cpu/wav2vec2_tiny_*.yaml) stayed at chance for 250 updates.

``make_synthetic_speech(out)`` writes ``out/LibriSpeech/train-clean-100/...`` and the prepared
manifests (``train.tsv``, ``valid.tsv`` with held-out speakers, ``.wrd``/``.ltr``,
``stats.json``, ``skipped.tsv``) into ``out``: ~6 MB, a few seconds, fully seeded.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf

from bio_speech_dyt.io import atomic_path, write_text
from speech.data.audio import SAMPLE_RATE
from bio_speech_dyt.prepared import load_stats, preparing, up_to_date
from speech.data.prepare import KIND, prepare_librispeech

#: vowel formant targets F1, F2, F3 in Hz (adult averages)
VOWELS = {"A": (730, 1090, 2440), "E": (530, 1840, 2480), "I": (270, 2290, 3010),
          "O": (570, 840, 2410), "U": (300, 870, 2240), "Y": (490, 1350, 1690)}
#: vowel → typical duration in s (open vowels longer, as in speech); each token varies ±15 %
VOWEL_DURATIONS = {"A": 0.2, "E": 0.16, "I": 0.12, "O": 0.19, "U": 0.13, "Y": 0.15}
#: consonant → (kind, noise band in Hz or nasal formants)
CONSONANTS = {"S": ("fricative", (4500, 7500)), "H": ("fricative", (2000, 4000)), "F": ("fricative", (1200, 7500)),
              "P": ("stop", (300, 1500)), "T": ("stop", (3000, 6000)), "K": ("stop", (1500, 3000)),
              "M": ("nasal", (250, 1100, 2300)), "N": ("nasal", (250, 1600, 2600))}
#: consonant kind → typical duration in s
CONSONANT_DURATIONS = {"fricative": 0.09, "stop": 0.06, "nasal": 0.07}
BANDWIDTHS = np.array([90.0, 110.0, 170.0])
SUBSET = "train-clean-100"


@dataclasses.dataclass(frozen=True)
class Speaker:
    f0: float  # mean pitch, Hz
    tract: float  # formant scale (shorter vocal tract → higher formants)
    tilt: float  # harmonic amplitude ∝ k^-tilt
    breath: float  # aspiration noise in voiced segments
    rate: float  # speaking-rate factor

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Speaker":
        return cls(f0=float(rng.uniform(85, 240)), tract=float(rng.uniform(0.85, 1.2)),
                   tilt=float(rng.uniform(0.6, 1.3)), breath=float(rng.uniform(0.01, 0.08)),
                   rate=float(rng.uniform(0.8, 1.25)))


def make_lexicon(rng: np.random.Generator, size: int = 40) -> list[str]:
    """``size`` distinct words of 1-3 syllables (an optional consonant + a vowel), most
    frequent first: the language every speaker of a corpus speaks."""
    words: list[str] = []
    while len(words) < size:
        word = "".join((str(rng.choice(list(CONSONANTS))) if rng.random() < 0.75 else "") + str(rng.choice(list(VOWELS)))
                       for _ in range(rng.integers(1, 4)))
        if word not in words:
            words.append(word)
    return words


def _segments(rng: np.random.Generator, spk: Speaker, lexicon: list[str],
              seconds: float) -> tuple[list[tuple[str, float]], str]:
    """A timeline of ``(letter, duration_s)`` (letter ``""`` = pause) and the words it spells:
    lexicon words drawn with Zipf frequencies (p ∝ 1 / rank), phones at their typical
    duration scaled by the speaker's rate and a ±15 % jitter."""
    zipf = 1.0 / np.arange(1, len(lexicon) + 1)
    segs: list[tuple[str, float]] = [("", rng.uniform(0.05, 0.2))]
    words: list[str] = []
    total = segs[0][1]
    while total < seconds - 0.3:
        word = lexicon[rng.choice(len(lexicon), p=zipf / zipf.sum())]
        for letter in word:
            typical = VOWEL_DURATIONS.get(letter) or CONSONANT_DURATIONS[CONSONANTS[letter][0]]
            dur = typical * rng.uniform(0.85, 1.15) / spk.rate
            segs.append((letter, dur))
            total += dur
        words.append(word)
        pause = rng.uniform(0.03, 0.25) if rng.random() < 0.6 else 0.0
        if pause:
            segs.append(("", pause))
            total += pause
    segs.append(("", rng.uniform(0.05, 0.2)))
    return segs, " ".join(words)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Hann-window moving average along the last axis (same length, edges held)."""
    if x.ndim == 2:
        return np.stack([_smooth(row, width) for row in x])
    kernel = np.hanning(width)
    padded = np.pad(x, (width // 2, width - width // 2 - 1), mode="edge")
    size = 1 << (len(padded) + width - 2).bit_length()  # FFT convolution: widths are hundreds of samples
    full = np.fft.irfft(np.fft.rfft(padded, size) * np.fft.rfft(kernel / kernel.sum(), size), size)
    return full[width - 1 : len(padded)]


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """Unit-variance white noise band-limited to ``[lo, hi]`` Hz (FFT mask)."""
    size = 1 << (n - 1).bit_length()  # power-of-two FFT
    spec = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE)
    spec[(freqs < lo) | (freqs > hi)] = 0.0
    out = np.fft.irfft(spec, size)[:n]
    return out / (out.std() + 1e-8)


def synthesize(rng: np.random.Generator, spk: Speaker, lexicon: list[str], seconds: float) -> tuple[np.ndarray, str]:
    """One utterance (float32 in [-1, 1]) of ``lexicon`` words and its pseudo-transcript."""
    segs, words = _segments(rng, spk, lexicon, seconds)
    lens = [max(1, int(d * SAMPLE_RATE)) for _, d in segs]
    n = sum(lens)
    formants = np.empty((3, n))
    voiced = np.zeros(n)
    noise_env = np.zeros((len(CONSONANTS), n))
    pos = 0
    prev = np.array(VOWELS["Y"], dtype=float)  # formants hold through pauses and noise consonants
    for (letter, _), m in zip(segs, lens):
        sl = slice(pos, pos + m)
        kind, params = CONSONANTS.get(letter, ("vowel" if letter else "pause", VOWELS.get(letter)))
        if kind in ("vowel", "nasal"):
            prev = np.array(params, dtype=float)
            voiced[sl] = 1.0 if kind == "vowel" else 0.35
        elif kind in ("fricative", "stop"):
            closure = 0 if kind == "fricative" else m * 2 // 3
            env = np.r_[np.zeros(closure), np.ones(m - closure) if kind == "fricative" else np.exp(-np.arange(m - closure) / 60)]
            noise_env[list(CONSONANTS).index(letter), sl] = env * (0.5 if kind == "fricative" else 1.2)
        formants[:, sl] = prev[:, None]
        pos += m
    formants = _smooth(formants, int(0.04 * SAMPLE_RATE)) * spk.tract
    voiced = _smooth(voiced, int(0.025 * SAMPLE_RATE))
    noise_env = _smooth(noise_env, int(0.01 * SAMPLE_RATE))

    # pitch: declination, per-word accents, slow jitter
    t = np.arange(n) / SAMPLE_RATE
    accents = _smooth(np.repeat(rng.normal(0, 0.08, size=n // 1600 + 1), 1600)[:n], 3200)
    f0 = spk.f0 * np.linspace(1.1, 0.88, n) * (1 + accents) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    # harmonics up to 7.6 kHz (as real voices): every band of the spectrum carries voice structure
    k = np.arange(1, int(7600 / f0.min()) + 1)[:, None]
    # harmonic gains follow the formant envelope; they vary slowly, so compute them every 5 ms
    hop = np.arange(0, n, 80)
    harm_freq = k * f0[None, hop]
    gain = sum((1.0 / (i + 1)) / (1 + ((harm_freq - formants[i, hop]) / BANDWIDTHS[i]) ** 2) for i in range(3))
    gain *= k ** (-spk.tilt) * (harm_freq < SAMPLE_RATE / 2 - 500)
    gain = np.stack([np.interp(np.arange(n), hop, row) for row in gain])
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = (gain * np.sin(k * phase[None, :] + rng.uniform(0, 2 * np.pi, size=(len(k), 1)))).sum(0)
    voice = voice / (np.abs(voice).max() + 1e-8)
    aspiration = _band_noise(rng, n, 500, 6000) * spk.breath

    wav = voiced * (voice + aspiration)
    for i, (kind, params) in enumerate(CONSONANTS.values()):
        if kind != "nasal" and noise_env[i].any():
            wav += noise_env[i] * 0.25 * _band_noise(rng, n, *params)
    wav *= rng.uniform(0.4, 0.8) / (np.abs(wav).max() + 1e-8)
    return wav.astype(np.float32), words


def make_synthetic_speech(
    out: Path, seed: int = 0, num_speakers: int = 10, utterances_per_speaker: int = 8,
    seconds: tuple[float, float] = (2.2, 4.5), valid_fraction: float = 0.2,
) -> dict:
    """Write the corpus under ``out/LibriSpeech`` and its manifests into ``out``; returns stats.
    The whole of it runs under ``out``'s prepare lock (a concurrent run never mixes its audio in).
    A finished corpus made with the same arguments is kept as it is."""
    out = Path(out)
    arguments = {"generator": "synthetic speech", "seed": seed, "num_speakers": num_speakers,
                 "utterances_per_speaker": utterances_per_speaker, "seconds": list(seconds),
                 "valid_fraction": valid_fraction}
    if up_to_date(out, KIND, arguments):
        print(f"{out}: synthetic speech up to date, kept")
        return load_stats(out / "stats.json")
    with preparing(out, KIND, arguments):
        _write_corpus(out / "LibriSpeech" / SUBSET, seed, num_speakers, utterances_per_speaker, seconds)
        return prepare_librispeech(root=out / "LibriSpeech", valid_fraction=valid_fraction, seed=seed, out=out)


def _write_corpus(root: Path, seed: int, num_speakers: int, utterances_per_speaker: int,
                  seconds: tuple[float, float]) -> None:
    rng = np.random.default_rng(seed)
    lexicon = make_lexicon(rng)
    for s in range(num_speakers):
        spk_id, chapter = 9000 + s, 100 + s
        spk = Speaker.sample(rng)
        folder = root / str(spk_id) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for u in range(utterances_per_speaker):
            wav, words = synthesize(rng, spk, lexicon, float(rng.uniform(*seconds)))
            name = f"{spk_id}-{chapter}-{u:04d}"
            with atomic_path(folder / f"{name}.flac") as tmp:
                sf.write(str(tmp), wav, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            lines.append(f"{name} {words}\n")
        write_text(folder / f"{spk_id}-{chapter}.trans.txt", "".join(lines))
