"""The one downloader of the suite (hg38, LibriSpeech, ...): resumable, retried, verified, atomic.

A download streams into ``NAME.part`` with a progress bar and resumes it with an HTTP ``Range``
request after an interruption (retried in this process, or continued by a later run). The
finished file is checked against the size the server announces (and ``RemoteFile.size`` when
known) and against a checksum — ``RemoteFile.sha256``, ``RemoteFile.md5`` or the ``x-goog-hash:
md5=…`` header Google Cloud Storage sends — before it is renamed to ``NAME``. A ``NAME.verified``
note records what was checked, so a re-run skips the download. Written on the standard library
(urllib) because no dependency of ours offers resumable, checksummed HTTP downloads.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bio_speech_dyt.io import file_digest, write_json
from bio_speech_dyt.prepared import DataError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    url: str
    name: str
    size: int | None = None
    md5: str | None = None  # hex digest
    sha256: str | None = None  # hex digest (checked instead of the MD5 when given)


def _header_md5(headers: http.client.HTTPMessage) -> str | None:
    for value in headers.get_all("x-goog-hash") or []:
        for part in value.split(","):
            key, _, b64 = part.strip().partition("=")
            if key == "md5":
                return base64.b64decode(b64).hex()
    return None


def _probe(remote: RemoteFile, timeout: float) -> tuple[int | None, str | None]:
    """HEAD: (size, md5) announced by the server, either may be None."""
    request = urllib.request.Request(remote.url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            size = resp.headers.get("Content-Length")
            return (int(size) if size is not None else None), _header_md5(resp.headers)
    except urllib.error.HTTPError as e:
        if e.code in (403, 405, 501):  # a server without HEAD: sizes come from the GET, the checksum stays
            return None, None
        raise


def _fetch_into(remote: RemoteFile, part: Path, total: int | None, timeout: float) -> None:
    """Append the missing bytes of ``remote`` to ``part`` (one request)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        if have and resp.status != 206:  # server ignored the range: start over
            have = 0
        elif have:
            content_range = resp.headers.get("Content-Range")  # some servers omit it on a 206
            match = re.match(r"bytes (\d+)-", content_range or f"bytes {have}-")
            if not match or int(match.group(1)) != have:
                raise DataError(f"{remote.url}: bad Content-Range {resp.headers.get('Content-Range')!r} for a resume at {have}")
        with open(part, "ab" if have else "wb") as fh, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=remote.name, leave=False
        ) as bar:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                fh.write(block)
                bar.update(len(block))


def download(remote: RemoteFile, dest_dir: Path, *, retries: int = 5, timeout: float = 60.0) -> Path:
    """Download ``remote`` into ``dest_dir / remote.name``; resume, verify, rename. Returns the path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final, part, note = dest_dir / remote.name, dest_dir / (remote.name + ".part"), dest_dir / (remote.name + ".verified")
    if final.is_file() and note.is_file() and json.loads(note.read_text()).get("size") == final.stat().st_size:
        print(f"{final}: already downloaded and verified")
        return final
    total, md5 = _probe(remote, timeout)
    total = total if total is not None else remote.size
    md5 = remote.md5 or md5
    if remote.size is not None and total != remote.size:
        raise DataError(f"{remote.url}: server announces {total} bytes, expected {remote.size}")
    if part.exists() and total is not None and part.stat().st_size > total:
        part.unlink()
    for attempt in range(retries + 1):
        if total is not None and part.exists() and part.stat().st_size == total:
            break
        try:
            _fetch_into(remote, part, total, timeout)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
            if attempt == retries:
                raise DataError(f"{remote.url}: download failed after {retries + 1} attempts ({e}); re-run to resume") from e
            print(f"{remote.name}: interrupted ({e}); resuming")
            time.sleep(min(2**attempt, 30) * 0.1)
        else:
            if total is None:
                break
    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(f"{part}: got {size} bytes, expected {total}; re-run to resume")
    algo, expected = ("sha256", remote.sha256) if remote.sha256 else ("md5", md5)
    if expected is not None and (got := file_digest(part, algo)) != expected:
        part.unlink()
        raise DataError(f"{remote.url}: {algo.upper()} mismatch (got {got}, expected {expected}); "
                        "the partial file was removed")
    os.replace(part, final)
    write_json(note, {"url": remote.url, "size": size, algo: expected, "checked": expected is not None})
    return final
