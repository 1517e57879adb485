"""Atomic writes: all or nothing, readable modes."""
import os
import stat

import pytest

from bio_speech_dyt.io import atomic_path, write_json


def test_atomic_write_and_failure_leaves_old_file(tmp_path):
    p = tmp_path / "a" / "m.json"
    write_json(p, {"x": 1})
    assert p.read_text().strip() == '{\n  "x": 1\n}'
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~_umask()
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert '"x": 1' in p.read_text()
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]  # no temp file left behind


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m
