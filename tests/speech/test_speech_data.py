"""Speech data: manifests, bad audio, LibriSpeech preparation, download, batching, synthetic corpus."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech.data.audio import AudioError, check_audio
from speech.data.dataset import AudioDataset, MaxTokensBatchSampler, crop_collate
from speech.data.download import download_librispeech
from speech.data.manifest import ManifestEntry, letters, read_manifest, write_manifest
from speech.data.prepare import prepare_librispeech
from speech.data.synthetic import make_lexicon, make_synthetic_speech
from tests.support.speech_helpers import REAL_LIBRISPEECH, librispeech_tree, tone, write_flac


# -- manifests ------------------------------------------------------------------------------
def test_manifest_round_trip(tmp_path):
    entries = [ManifestEntry("a/b/1-2-0000.flac", 32000), ManifestEntry("c/2-3-0001.flac", 17)]
    write_manifest(tmp_path / "train.tsv", tmp_path / "root", entries)
    text = (tmp_path / "train.tsv").read_text().splitlines()
    assert text == [str(tmp_path / "root"), "a/b/1-2-0000.flac\t32000", "c/2-3-0001.flac\t17"]
    m = read_manifest(tmp_path / "train.tsv")
    assert m.root == tmp_path / "root" and list(m.entries) == entries
    assert m.audio_path(1) == tmp_path / "root" / "c/2-3-0001.flac" and m.sizes == [32000, 17]


def test_manifest_relative_root_and_bad_line(tmp_path):
    (tmp_path / "m.tsv").write_text("audio\nx.flac\t5\n")
    assert read_manifest(tmp_path / "m.tsv").root == (tmp_path / "audio").resolve()
    (tmp_path / "bad.tsv").write_text("/r\nx.flac\t5\ny.flac five\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:3"):
        read_manifest(tmp_path / "bad.tsv")


def test_letters():
    assert letters("HI YOU") == "H I | Y O U |"


# -- bad audio --------------------------------------------------------------------------------
def _truncated_flac(p: Path) -> None:
    write_flac(p, 1.0)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _truncated_wav(p: Path) -> None:
    sf.write(str(p), tone(1.0), 16000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


BAD = {
    "truncated.flac": (_truncated_flac, "truncated"),
    "truncated.wav": (_truncated_wav, "truncated"),
    "zero_bytes.flac": (lambda p: p.write_bytes(b""), "empty"),
    "no_frames.wav": (lambda p: sf.write(str(p), np.zeros((0, 1), np.float32), 16000), "empty"),
    "not_audio.flac": (lambda p: p.write_text("this is not a FLAC file\n" * 20), "unreadable"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_audio_is_classified(tmp_path, name):
    make, reason = BAD[name]
    make(tmp_path / name)
    with pytest.raises(AudioError) as e:
        check_audio(tmp_path / name)
    assert e.value.reason == reason and name in str(e.value)


def test_good_audio_info(tmp_path):
    info = check_audio(write_flac(tmp_path / "ok.flac", 0.5, rate=8000, channels=2))
    assert (info.sample_rate, info.channels, info.frames) == (8000, 2, 4000)


# -- prepare librispeech ------------------------------------------------------------------------
SPEAKERS = {"train-clean-100": ["11", "12", "13", "14", "15", "16"], "dev-clean": ["21", "22"]}


def test_prepare_pools_and_splits_speaker_disjoint(tmp_path):
    root = librispeech_tree(tmp_path / "in", SPEAKERS)
    bad = root / "train-clean-100" / "11" / "1011"
    _truncated_flac(bad / "11-1011-0099.flac")
    (bad / "11-1011-0098.flac").write_text("not audio")
    (bad / "11-1011-0097.flac").write_bytes(b"")
    stats = prepare_librispeech(root=root, valid_fraction=0.25, seed=3, out=tmp_path / "out")
    out = tmp_path / "out"
    train, valid = read_manifest(out / "train.tsv"), read_manifest(out / "valid.tsv")
    assert train.root == root.resolve() == valid.root
    assert len(train) + len(valid) == 16 == 19 - stats["skipped"]["total"]
    assert stats["skipped"]["by_reason"] == {"empty": 1, "truncated": 1, "unreadable": 1}
    skipped = dict(line.split("\t") for line in (out / "skipped.tsv").read_text().splitlines())
    assert skipped["train-clean-100/11/1011/11-1011-0099.flac"] == "truncated"
    spk = lambda m: {e.path.split("/")[1] for e in m.entries}  # noqa: E731
    assert not spk(train) & spk(valid) and len(spk(valid)) == 2
    assert stats["splits"]["valid"]["speakers"] == 2 and stats["splits"]["train"]["utterances"] == len(train)
    assert all(e.num_samples == sf.info(str(train.audio_path(i))).frames for i, e in enumerate(train.entries))
    wrd = (out / "train.wrd").read_text().splitlines()
    assert len(wrd) == len(train) and wrd[0].startswith("HELLO WORLD")
    assert (out / "train.ltr").read_text().splitlines()[0] == letters(wrd[0])
    # re-running is idempotent
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    prepare_librispeech(root=root, valid_fraction=0.25, seed=3, out=out)
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # another seed, another (still speaker-disjoint) split
    prepare_librispeech(root=root, valid_fraction=0.25, seed=4, out=tmp_path / "out4")
    assert spk(read_manifest(tmp_path / "out4" / "valid.tsv")) != spk(valid)


def test_prepare_subset_flags_and_partial_transcripts(tmp_path):
    root = librispeech_tree(tmp_path / "in", SPEAKERS)
    (root / "dev-clean" / "21" / "1021" / "21-1021.trans.txt").unlink()
    stats = prepare_librispeech(root=root, train_subsets=["train-clean-100"], valid_subsets=["dev-clean"],
                                out=tmp_path / "out")
    out = tmp_path / "out"
    assert len(read_manifest(out / "train.tsv")) == 12 and len(read_manifest(out / "valid.tsv")) == 4
    assert (out / "train.wrd").is_file() and not (out / "valid.wrd").exists()
    assert "2 of 4" in stats["transcripts"]["valid"]
    with pytest.raises(ValueError, match="test-other"):
        prepare_librispeech(root=root, valid_subsets=["test-other"], out=tmp_path / "o2")


def test_prepare_wrong_rate_and_stereo(tmp_path):
    root = librispeech_tree(tmp_path / "in", {"train-clean-100": ["11", "12"]})
    odd = write_flac(root / "train-clean-100" / "11" / "1011" / "11-1011-0005.flac", 2.0, rate=22050, channels=2)
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match=r"11-1011-0005\.flac.*22050.*--resample"):
        prepare_librispeech(root=root, out=tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # nothing half-written
    with pytest.raises(ValueError, match=r"11-1011-0005\.flac.*channels.*--downmix"):
        prepare_librispeech(root=root, resample=True, out=tmp_path / "out")
    odd_bytes = odd.read_bytes()
    stats = prepare_librispeech(root=root, resample=True, downmix=True, valid_fraction=0.5, out=tmp_path / "out")
    assert stats["converted"] == {"resampled": 1, "downmixed": 1}
    assert odd.read_bytes() == odd_bytes  # the input is never written
    manifests = [read_manifest(tmp_path / "out" / f"{s}.tsv") for s in ("train", "valid")]
    assert all(m.root == (tmp_path / "out" / "audio").resolve() for m in manifests)
    for m in manifests:
        for i, e in enumerate(m.entries):
            info = sf.info(str(m.audio_path(i)))
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, e.num_samples)
    assert sum(len(m) for m in manifests) == 5


# -- download ---------------------------------------------------------------------------------
class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``payloads`` with HTTP Range support; records the Range headers it saw."""

    payloads: dict[str, bytes] = {}
    ranges: list[str | None] = []

    def do_GET(self):  # noqa: N802
        body = self.payloads.get(self.path)
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slr12"
    server.shutdown()


def _tiny_archive(tmp_path: Path) -> bytes:
    ls = librispeech_tree(tmp_path / "src", {"dev-clean": ["31", "32"]}, utts=1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(ls, arcname="LibriSpeech")
    return buf.getvalue()


def test_download_resumes_verifies_and_extracts(tmp_path, http_server):
    archive = _tiny_archive(tmp_path)
    _RangeHandler.payloads = {"/slr12/dev-clean.tar.gz": archive}
    _RangeHandler.ranges = []
    sums = {"dev-clean": hashlib.sha256(archive).hexdigest()}
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "dev-clean.tar.gz.part").write_bytes(archive[:100])  # an interrupted earlier download
    root = download_librispeech(dest, ["dev-clean"], base_url=http_server, checksums=sums)
    assert _RangeHandler.ranges == ["bytes=100-"]
    assert (dest / "dev-clean.tar.gz").read_bytes() == archive
    assert len(list(root.rglob("*.flac"))) == 2
    download_librispeech(dest, ["dev-clean"], base_url=http_server, checksums=sums)  # done: no request
    assert len(_RangeHandler.ranges) == 1
    stats = prepare_librispeech(root=root, valid_fraction=0.5, out=tmp_path / "out")
    assert stats["splits"]["train"]["utterances"] + stats["splits"]["valid"]["utterances"] == 2


def test_download_checksum_mismatch(tmp_path, http_server):
    _RangeHandler.payloads = {"/slr12/dev-clean.tar.gz": _tiny_archive(tmp_path)}
    with pytest.raises(ValueError, match="SHA256 mismatch"):
        download_librispeech(tmp_path / "dl", ["dev-clean"], base_url=http_server, checksums={"dev-clean": "0" * 64})
    assert not list((tmp_path / "dl").glob("*.tar.gz*"))


# -- dataset and batching -----------------------------------------------------------------------
def test_batch_sampler_respects_max_tokens_and_covers_all():
    sizes = [16000 + 997 * i % 40000 for i in range(50)]
    sampler = MaxTokensBatchSampler(sizes, max_tokens=120_000, shuffle=True, seed=1)
    batches = [[i for _, i in b] for b in sampler]  # one pass
    assert sorted(i for b in batches for i in b) == list(range(50))
    assert all(len(b) * max(sizes[i] for i in b) <= 120_000 for b in batches)
    assert all(max(sizes[i] for i in b) - min(sizes[i] for i in b) < 10_000 for b in batches)  # bucketed
    two = MaxTokensBatchSampler(sizes, max_tokens=120_000, shuffle=True, seed=1, max_steps=2 * len(batches))
    steps = list(two)
    assert [s for s, _ in steps[5]] == [5] * len(steps[5])  # items carry their step
    steps = [[i for _, i in b] for b in steps]
    assert steps[: len(batches)] == batches and steps[len(batches):] != batches  # a new order each pass
    it = iter(two)  # Lightning creates the iterator before the harness sets start_step on resume
    two.start_step = 3  # resume: the sequence continues where it stopped
    assert [[i for _, i in b] for b in it] == steps[3:]
    two.set_distributed(2, 1)  # rank 1 of 2 takes the second of each pair of batches
    two.start_step = 0
    assert [i for _, i in next(iter(two))] == batches[1]
    with pytest.raises(ValueError, match="max_tokens"):
        MaxTokensBatchSampler(sizes, max_tokens=1000, shuffle=False)


def test_crop_collate_and_dataset(tmp_path):
    waves = [torch.arange(n, dtype=torch.float32) for n in (10, 14, 20)]
    assert crop_collate(waves, None, None, normalize=False).tolist()[2] == list(range(5, 15))
    train = crop_collate(waves, 8, torch.Generator().manual_seed(0), normalize=True)
    assert train.shape == (3, 8) and torch.allclose(train.mean(1), torch.zeros(3), atol=1e-5)
    root = librispeech_tree(tmp_path / "in", {"dev-clean": ["1", "2"]}, seconds=1.0)
    prepare_librispeech(root=root, valid_fraction=0.0, out=tmp_path / "out")
    ds = AudioDataset(tmp_path / "out" / "train.tsv", min_sample_size=16_500, max_sample_size=16_800)
    assert len(ds) == 2 and ds.dropped == 2 and ds.size(0) == 16_800
    assert ds[(3, 0)][0] == 3 and ds[(3, 0)][1].shape == (17_600,)


# -- synthetic corpus ---------------------------------------------------------------------------
def test_synthetic_speech_small(tmp_path):
    stats = make_synthetic_speech(tmp_path / "speech", seed=1, num_speakers=3, utterances_per_speaker=2,
                                  seconds=(2.1, 2.5), valid_fraction=0.34)
    out = tmp_path / "speech"
    train, valid = read_manifest(out / "train.tsv"), read_manifest(out / "valid.tsv")
    assert (len(train), len(valid)) == (4, 2) and stats["skipped"]["total"] == 0
    assert {e.path.split("/")[1] for e in valid.entries}.isdisjoint({e.path.split("/")[1] for e in train.entries})
    wav, rate = sf.read(str(train.audio_path(0)))
    assert rate == 16000 and wav.ndim == 1 and 0.2 < np.abs(wav).max() <= 1.0 and len(wav) >= 2.1 * 16000
    # every word comes from the corpus lexicon (drawn first from the seed), frequent words recur
    words = (out / "train.wrd").read_text().split() + (out / "valid.wrd").read_text().split()
    assert words and set(words) <= set(make_lexicon(np.random.default_rng(1)))
    assert len(set(words)) < len(words)
    again = tmp_path / "again"
    make_synthetic_speech(again, seed=1, num_speakers=3, utterances_per_speaker=2, seconds=(2.1, 2.5),
                          valid_fraction=0.34)
    assert np.array_equal(sf.read(str(read_manifest(again / "train.tsv").audio_path(0)))[0], wav)


@pytest.mark.slow
def test_synthetic_speech_default_size(tmp_path):
    stats = make_synthetic_speech(tmp_path / "speech")
    size = sum(p.stat().st_size for p in (tmp_path / "speech").rglob("*") if p.is_file())
    assert size < 10 * 2**20 and stats["splits"]["valid"]["speakers"] == 2


# -- the real LibriSpeech sample ----------------------------------------------------------------
@pytest.mark.real_data
@pytest.mark.skipif(not REAL_LIBRISPEECH.is_dir(), reason="BSD_REAL_DATA LibriSpeech sample not found")
def test_prepare_real_sample(tmp_path):
    stats = prepare_librispeech(root=REAL_LIBRISPEECH, valid_fraction=0.1, seed=0, out=tmp_path)
    n = stats["splits"]["train"]["utterances"] + stats["splits"]["valid"]["utterances"]
    assert n == 133 - stats["skipped"]["total"]
    assert len(read_manifest(tmp_path / "train.tsv")) + len(read_manifest(tmp_path / "valid.tsv")) == n
    assert stats["splits"]["valid"]["speakers"] == round(0.1 * 77)
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
