"""``bsd prepare librispeech``: LibriSpeech folders → fairseq manifests in ``--out``.

Layout read: ``ROOT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with
``<speaker>-<chapter>.trans.txt`` beside the audio. Written: ``train.tsv``, ``valid.tsv``,
``{train,valid}.{wrd,ltr}`` when every utterance of the split has a transcript,
``skipped.tsv`` and ``stats.json``, as every prepare (:mod:`bio_speech_dyt.prepared`): staged,
then published with ``stats.json`` — the completion marker, with each file's size and SHA-256 —
written last. A run killed at any point leaves a folder that :func:`read_prepared` (and the
pretraining job) refuses until a re-run completes it; a truncated manifest or stats.json is
detected the same way.

Audio must be 16 kHz mono: other rates need ``--resample``, more channels ``--downmix``
(converted files are written under ``OUT/audio``, never beside the input; the manifest root
then becomes ``OUT/audio`` and unconverted files are linked there). Empty, unreadable and
truncated files are skipped, counted and listed with the reason, and so is every other file
under a subset folder that is neither FLAC audio (``.flac`` in any case) nor a transcript.

The prepare holds ``--out``'s lock and checks it (:func:`bio_speech_dyt.prepared.preparing`),
never reads a folder written by ``bsd prepare`` under the root (its own ``--out`` included: see
:mod:`speech.data.layout`), refuses audio outside the LibriSpeech layout naming the right
``--root``, and refuses a split left empty (a ``--valid-fraction`` above 0 with one speaker).
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import soundfile as sf

from bio_speech_dyt.io import atomic_path, write_text
from bio_speech_dyt.prepared import (KINDS, STATS, DataError, NotPreparedError, interrupted, preparing, publish, read_stats,
                                     resolved, staging)
from speech.data.audio import NOT_AUDIO, SAMPLE_RATE, AudioError, AudioInfo, check_audio, read_audio, to_mono_16k
from speech.data.layout import AUDIO_SUFFIX, LAYOUT, SubsetFiles, check_layout, read_transcripts, scan_tree
from speech.data.manifest import ManifestEntry, write_manifest, write_transcripts

KIND = "librispeech"


@dataclasses.dataclass
class Utterance:
    rel: str  # path relative to the LibriSpeech root, e.g. train-clean-100/19/198/19-198-0000.flac
    subset: str
    speaker: str
    info: AudioInfo
    transcript: str | None

    @property
    def utt_id(self) -> str:
        return Path(self.rel).stem

    @property
    def needs_conversion(self) -> bool:
        return self.info.sample_rate != SAMPLE_RATE or self.info.channels != 1

    @property
    def num_samples(self) -> int:
        if self.info.sample_rate == SAMPLE_RATE:
            return self.info.frames
        return math.ceil(self.info.frames * SAMPLE_RATE / self.info.sample_rate)


def _choose_subsets(
    available: list[str], train: Sequence[str] | None, valid: Sequence[str] | None, root: Path
) -> tuple[list[str], list[str] | None]:
    """``(train subsets, valid subsets or None = split train speaker-disjointly)``."""
    for name in [*(train or []), *(valid or [])]:
        if name not in available:
            raise ValueError(f"subset {name!r} not found under {root} (found: {', '.join(available) or 'none'})")
    if valid:
        overlap = set(valid) & set(train or [])
        if overlap:
            raise ValueError(f"subsets {sorted(overlap)} are both train and valid")
        return list(train) if train else [s for s in available if s not in valid], list(valid)
    return list(train) if train else available, None


def _scan(root: Path, tree: dict[str, SubsetFiles], subsets: Sequence[str], resample: bool, downmix: bool
          ) -> tuple[list[Utterance], list[tuple[str, str]]]:
    """Check every file; return the usable utterances and ``(relative path, reason)`` skips."""
    utts: list[Utterance] = []
    skipped: list[tuple[str, str]] = []
    for subset in subsets:
        files = tree[subset]
        transcripts = read_transcripts(files.transcripts)
        for path in files.audio:
            speaker = check_layout(root, path)
            rel = path.relative_to(root).as_posix()
            try:
                info = check_audio(path)
            except AudioError as e:
                skipped.append((rel, e.reason))
                print(f"skipped {rel}: {e.reason} ({e.detail})")
                continue
            if info.sample_rate != SAMPLE_RATE and not resample:
                raise ValueError(f"{path}: sample rate {info.sample_rate} Hz, expected {SAMPLE_RATE}; pass --resample")
            if info.channels != 1 and not downmix:
                raise ValueError(f"{path}: {info.channels} channels, expected mono; pass --downmix")
            utts.append(Utterance(rel, subset, speaker, info, transcripts.get(path.name[: -len(AUDIO_SUFFIX)])))
        for path in files.other:
            skipped.append((path.relative_to(root).as_posix(), NOT_AUDIO))
        if files.other:
            print(f"skipped {len(files.other)} file(s) in {root / subset} that are neither FLAC audio nor "
                  f"transcripts (listed in skipped.tsv as {NOT_AUDIO})")
    return utts, skipped


def split_speakers(speakers: Sequence[str], valid_fraction: float, seed: int) -> set[str]:
    """A seeded choice of ``round(valid_fraction × n)`` speakers (at least one when the fraction
    is positive and there are two or more speakers) for validation."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    pool = sorted(set(speakers))
    n = round(valid_fraction * len(pool))
    if valid_fraction > 0 and len(pool) > 1:
        n = min(max(n, 1), len(pool) - 1)
    random.Random(seed).shuffle(pool)
    return set(pool[:n])


def _materialize(root: Path, audio_root: Path, utts: Sequence[Utterance]) -> None:
    """Write converted files (16 kHz mono FLAC) under ``audio_root`` and link the others."""
    for u in utts:
        dst = audio_root / u.rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if u.needs_conversion:
            data, rate = read_audio(root / u.rel)
            with atomic_path(dst) as tmp:
                sf.write(str(tmp), to_mono_16k(data, rate), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        elif not dst.exists():
            os.symlink((root / u.rel).resolve(), dst)


def _split_stats(utts: Sequence[Utterance]) -> dict:
    samples = sum(u.num_samples for u in utts)
    return {
        "utterances": len(utts),
        "speakers": len({u.speaker for u in utts}),
        "samples": samples,
        "hours": samples / SAMPLE_RATE / 3600,
        "subsets": sorted({u.subset for u in utts}),
    }


def prepare_librispeech(
    root: Path | None = None,
    download: bool = False,
    train_subsets: Sequence[str] | None = None,
    valid_subsets: Sequence[str] | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    resample: bool = False,
    downmix: bool = False,
    out: Path = Path("data/librispeech"),
) -> dict:
    """Prepare manifests; returns the ``stats.json`` content."""
    out = Path(out)
    if root is None and not download:
        raise ValueError("give --root PATH/LibriSpeech or --download")
    if root is not None:
        root = Path(root).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"LibriSpeech root not found: {root}")
    arguments = {"root": resolved(root), "download": download, "train_subsets": train_subsets,
                 "valid_subsets": valid_subsets, "valid_fraction": valid_fraction, "seed": seed,
                 "resample": resample, "downmix": downmix}
    with preparing(out, KIND, arguments, inputs=(root,)):
        if download:
            from speech.data.download import download_librispeech

            wanted = [*(train_subsets or []), *(valid_subsets or [])] or None
            root = download_librispeech(out / "downloads", subsets=wanted).resolve()
        splits, skipped = _choose(root, out, train_subsets, valid_subsets, valid_fraction, seed, resample, downmix)
        return _write(root, out, splits, skipped, seed, valid_fraction if valid_subsets is None else None)


def _choose(root: Path, out: Path, train_subsets: Sequence[str] | None, valid_subsets: Sequence[str] | None,
            valid_fraction: float, seed: int, resample: bool, downmix: bool
            ) -> tuple[dict[str, list[Utterance]], list[tuple[str, str]]]:
    """The train / valid utterances and the skipped files; a split left empty is an error."""
    tree = scan_tree(root, out)
    available = sorted(name for name, files in tree.items() if files.audio)
    if not available:
        raise ValueError(f"no subset folders with .flac files under {root} (expected {LAYOUT})")
    train_names, valid_names = _choose_subsets(available, train_subsets, valid_subsets, root)
    utts, skipped = _scan(root, tree, [*train_names, *(valid_names or [])], resample, downmix)
    if valid_names is None:
        valid_speakers = split_speakers([u.speaker for u in utts], valid_fraction, seed)
        splits = {
            "train": [u for u in utts if u.speaker not in valid_speakers],
            "valid": [u for u in utts if u.speaker in valid_speakers],
        }
    else:
        splits = {
            "train": [u for u in utts if u.subset in train_names],
            "valid": [u for u in utts if u.subset in valid_names],
        }
    _check_not_empty(root, splits, skipped, valid_names, valid_fraction)
    return splits, skipped


def _check_not_empty(root: Path, splits: dict[str, list[Utterance]], skipped: list[tuple[str, str]],
                     valid_names: list[str] | None, valid_fraction: float) -> None:
    skips = f" ({len(skipped)} file(s) skipped: {dict(Counter(r for _, r in skipped))})" if skipped else ""
    if not splits["train"]:
        raise DataError(f"{root}: no usable training utterances{skips}")
    if splits["valid"] or (valid_names is None and valid_fraction == 0):
        return
    if valid_names is not None:
        raise DataError(f"{root}: the valid subset(s) {', '.join(valid_names)} hold no usable utterance{skips}")
    speakers = len({u.speaker for u in splits["train"]})
    raise DataError(f"{root}: the valid split would be empty: --valid-fraction {valid_fraction} holds out whole "
                    f"speakers and the usable utterances come from {speakers} speaker(s); a speaker-disjoint "
                    "split needs at least 2 (check --root, or name --valid-subsets, or pass --valid-fraction 0)")


def _write(root: Path, out: Path, splits: dict[str, list[Utterance]], skipped: list[tuple[str, str]], seed: int,
           valid_fraction: float | None) -> dict:
    utts = [u for members in splits.values() for u in members]
    manifest_root = root
    if any(u.needs_conversion for u in utts):
        manifest_root = (out / "audio").resolve()
        _materialize(root, manifest_root, utts)

    stats: dict = {"root": str(root), "manifest_root": str(manifest_root), "sample_rate": SAMPLE_RATE, "seed": seed,
                   "valid_fraction": valid_fraction, "splits": {}, "transcripts": {},
                   "skipped": {"total": len(skipped), "by_reason": dict(sorted(Counter(r for _, r in skipped).items()))},
                   "converted": {"resampled": sum(u.info.sample_rate != SAMPLE_RATE for u in utts),
                                 "downmixed": sum(u.info.channels != 1 for u in utts)}}
    with staging(out) as tmp:
        for split, members in splits.items():
            write_manifest(tmp / f"{split}.tsv", manifest_root, [ManifestEntry(u.rel, u.num_samples) for u in members])
            stats["splits"][split] = _split_stats(members)
            have = sum(u.transcript is not None for u in members)
            if members and have == len(members):
                write_transcripts(tmp, split, [u.transcript for u in members])
                stats["transcripts"][split] = "written"
            else:
                stats["transcripts"][split] = f"{have} of {len(members)} utterances have one; .wrd/.ltr not written"
        write_text(tmp / "skipped.tsv", "".join(f"{rel}\t{reason}\n" for rel, reason in skipped))
        stats = publish(tmp, out, stats)  # a transcript file of an earlier run is removed, never left misaligned
    tr, va = stats["splits"]["train"], stats["splits"]["valid"]
    print(f"{out}: train {tr['utterances']} utts / {tr['speakers']} speakers / {tr['hours']:.3f} h; "
          f"valid {va['utterances']} utts / {va['speakers']} speakers / {va['hours']:.3f} h; skipped {len(skipped)}")
    return stats


def read_prepared(directory: Path, manifests: Sequence[str] = ("train.tsv", "valid.tsv")) -> dict:
    """``stats.json`` of a folder written by ``bsd prepare librispeech|synthetic``, after checking
    that the prepare completed, that the folder is a speech one, that every file it lists has its
    recorded size and that ``manifests`` are there
    (:class:`~bio_speech_dyt.prepared.NotPreparedError` otherwise, naming the missing manifest).

    A folder of fairseq manifests made elsewhere (e.g. by fairseq's ``wav2vec_manifest.py``) has no
    ``stats.json`` and no staging folder of ours: it is used as it is, with a warning that nothing
    vouches for it (``{}`` is returned). A folder whose ``bsd prepare`` was killed is refused."""
    directory = Path(directory)
    missing = [directory / m for m in manifests if not (directory / m).is_file()]
    if not (directory / STATS).exists() and not interrupted(directory):
        if missing:
            kind = KINDS[KIND]
            raise NotPreparedError(f"{missing[0]}: manifest not found{_manifests_in(directory)} (and no {STATS}: not a "
                                   f"prepared {kind.what}, or its prepare was interrupted; run `{kind.command}`)")
        warnings.warn(f"{directory}: manifests not written by `bsd prepare librispeech` (no {STATS}): "
                      "used unverified", stacklevel=2)
        return {}
    stats = read_stats(directory, KIND)
    if missing:
        raise NotPreparedError(f"{missing[0]}: manifest not found{_manifests_in(directory)}")
    return stats


def _manifests_in(directory: Path) -> str:
    if not directory.is_dir():
        return f" (no folder {directory})"
    found = sorted(p.name for p in directory.glob("*.tsv") if p.name != "skipped.tsv")
    return f"; {directory} holds {', '.join(found)}" if found else f" ({directory} holds no .tsv manifest)"
