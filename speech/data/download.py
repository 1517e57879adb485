"""OpenSLR LibriSpeech archives: download (the suite's resumable, retried, SHA-256-checked
downloader, with a progress bar over the ~60 GB), safe extraction, marked done per subset so a
re-run neither downloads nor extracts again.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Mapping, Sequence

from bio_speech_dyt.download import RemoteFile, download

OPENSLR = "https://www.openslr.org/resources/12"
#: the three training subsets of the 960 h set (fairseq's pretraining data)
DEFAULT_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500")
#: SHA-256 of each OpenSLR archive (as torchaudio's LIBRISPEECH dataset lists them)
SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
def extract(archive: Path, dest: Path) -> None:
    """Extract a tar(.gz) archive; members that would land outside ``dest`` are refused."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


def download_librispeech(
    dest: Path,
    subsets: Sequence[str] | None = None,
    base_url: str = OPENSLR,
    checksums: Mapping[str, str] = SHA256,
) -> Path:
    """Fetch and extract ``subsets`` (default: the 960 h training set) into ``dest``;
    returns ``dest/LibriSpeech``."""
    dest = Path(dest)
    for subset in subsets or DEFAULT_SUBSETS:
        if subset not in checksums:
            raise ValueError(f"unknown LibriSpeech subset {subset!r}; choose from {', '.join(sorted(checksums))}")
        done = dest / f".{subset}.extracted"
        if done.is_file():
            continue
        archive = download(RemoteFile(f"{base_url.rstrip('/')}/{subset}.tar.gz", f"{subset}.tar.gz",
                                      sha256=checksums[subset]), dest)
        print(f"extracting {archive}")
        extract(archive, dest)
        done.touch()
    return dest / "LibriSpeech"
