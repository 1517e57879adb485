"""Make `import fairseq2` work on machines without a system libsndfile.

fairseq2n dlopens ``libsndfile.so.1`` and also searches ``<venv>/lib``. soundfile's wheel
bundles a copy (``_soundfile_data/libsndfile_*.so``); link it there. Idempotent.
"""
from __future__ import annotations

import ctypes.util
import sys
from pathlib import Path


def main() -> int:
    target = Path(sys.prefix) / "lib" / "libsndfile.so.1"
    if target.exists():
        print(f"libsndfile: {target} present")
        return 0
    if ctypes.util.find_library("sndfile"):
        print("libsndfile: system library found, nothing to do")
        return 0
    import soundfile  # noqa: F401  (its package directory holds the bundled copy)

    data = Path(soundfile.__file__).parent / "_soundfile_data"
    bundled = sorted(data.glob("libsndfile*.so*"))
    if not bundled:
        print("libsndfile: no system copy and soundfile bundles none; install libsndfile1", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(bundled[0])
    print(f"libsndfile: linked {target} -> {bundled[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
