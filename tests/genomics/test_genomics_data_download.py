"""Resumable, verified downloads against a loopback HTTP server (never the internet)."""
import base64
import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest
from tests.support.genomics_helpers import random_dna

from bio_speech_dyt.prepared import DataError
from genomics.data import hg38
from bio_speech_dyt.download import RemoteFile, download
from genomics.data.hg38 import open_genome, prepare_hg38


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_first_get_after: int | None = None  # simulate a dropped connection on the first GET
    bad_md5 = False
    gets: list[str | None] = []

    def log_message(self, *args):
        pass

    def _head(self, body: bytes, status: int, extra: dict) -> None:
        self.send_response(status)
        md5 = hashlib.md5(b"x" if self.bad_md5 else self.server.full).digest()
        self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={base64.b64encode(md5).decode()}")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()

    def _lookup(self) -> bytes | None:
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
        self.server.full = data
        return data

    def do_HEAD(self):
        data = self._lookup()
        if data is not None:
            self._head(data, 200, {"Accept-Ranges": "bytes"})

    def do_GET(self):
        data = self._lookup()
        if data is None:
            return
        rng = self.headers.get("Range")
        type(self).gets.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = data[start:]
        if rng:
            self._head(body, 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        else:
            self._head(body, 200, {})
        if type(self).cut_first_get_after is not None:
            body = body[: type(self).cut_first_get_after]
            type(self).cut_first_get_after = None
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    _Handler.files, _Handler.cut_first_get_after, _Handler.bad_md5, _Handler.gets = {}, None, False, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_resumes(server, tmp_path):
    _, base = server
    payload = np.random.default_rng(0).bytes(3_000_000)
    _Handler.files["/big.bin"] = payload
    _Handler.cut_first_get_after = 1_000_000
    path = download(RemoteFile(f"{base}/big.bin", "big.bin"), tmp_path)
    assert path.read_bytes() == payload
    assert _Handler.gets[0] is None and _Handler.gets[-1] == "bytes=1000000-"  # resumed with a Range request
    assert not (tmp_path / "big.bin.part").exists()
    _Handler.gets.clear()
    download(RemoteFile(f"{base}/big.bin", "big.bin"), tmp_path)  # verified already: no transfer
    assert _Handler.gets == []


def test_download_resumes_a_partial_file_from_an_earlier_run(server, tmp_path):
    _, base = server
    payload = b"ACGT" * 100_000
    _Handler.files["/f.txt"] = payload
    (tmp_path / "f.txt.part").write_bytes(payload[:123_456])
    assert download(RemoteFile(f"{base}/f.txt", "f.txt"), tmp_path).read_bytes() == payload
    assert _Handler.gets == ["bytes=123456-"]


def test_download_rejects_bad_checksum_and_size(server, tmp_path):
    _, base = server
    _Handler.files["/f.txt"] = b"ACGT" * 1000
    _Handler.bad_md5 = True
    with pytest.raises(DataError, match="MD5 mismatch"):
        download(RemoteFile(f"{base}/f.txt", "f.txt"), tmp_path)
    assert not (tmp_path / "f.txt").exists() and not (tmp_path / "f.txt.part").exists()
    _Handler.bad_md5 = False
    with pytest.raises(DataError, match="server announces 4000 bytes, expected 5"):
        download(RemoteFile(f"{base}/f.txt", "f.txt", size=5), tmp_path)


def test_prepare_hg38_download(server, tmp_path, monkeypatch):
    _, base = server
    rng = np.random.default_rng(0)
    fasta = ">chr1\n" + random_dna(rng, 20_000) + "\n>chr2\n" + random_dna(rng, 8000) + "\n"
    _Handler.files["/hg38.ml.fa.gz"] = gzip.compress(fasta.encode())
    _Handler.files["/sequences_human.bed"] = b"chr1\t0\t16384\ttrain\nchr2\t0\t4096\tvalid\nchr2\t4096\t8000\ttest\n"
    monkeypatch.setattr(hg38, "HG38_BASE_URL", base)
    stats = prepare_hg38(fasta=None, bed=None, download=True, out=tmp_path / "hg38", seed=0)
    assert stats["splits"] == {"train": {"intervals": 1, "bases": 16384}, "valid": {"intervals": 1, "bases": 4096},
                               "test": {"intervals": 1, "bases": 3904}}
    assert open_genome(tmp_path / "hg38").genome.lengths == {"chr1": 20_000, "chr2": 8000}
    assert (tmp_path / "hg38/downloads/hg38.ml.fa.gz.verified").is_file()
