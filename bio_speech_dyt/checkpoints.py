"""Reading checkpoints safely: ``weights_only`` unpickling, and one clear error for a file that
is missing, truncated, garbage or not one of ours.

Every reader of a Lightning checkpoint's weights or config goes through here (resume,
evaluation, report analysis), so a bad file is reported the same way everywhere.
"""
from __future__ import annotations

import functools
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or is not what the job needs; names the file."""


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, mtime_ns: int, size: int) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, UnicodeDecodeError, OverflowError, MemoryError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupted or not a torch file: "
                              f"{first[:200]}); use an intact checkpoint, e.g. checkpoints/last.ckpt of a finished run") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (a {type(ckpt).__name__}, not a mapping)")
    return ckpt


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint as a dict (tensors on CPU), loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    st = path.stat()
    return _load_cached(str(path), st.st_mtime_ns, st.st_size)


def checkpoint_config(path: str | Path) -> dict:
    """The job config a checkpoint of ours stores (``hyper_parameters["config"]``, with its ``task``)."""
    raw = (load_checkpoint(path).get("hyper_parameters") or {}).get("config")
    if not isinstance(raw, dict) or not raw.get("task"):
        raise CheckpointError(f"{path}: no job config in hyper_parameters (not a checkpoint written by bsd)")
    return raw


def model_state(path: str | Path, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The checkpoint's weights under ``prefix`` (prefix removed)."""
    state = load_checkpoint(path).get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state_dict (not a Lightning checkpoint)")
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_weights(module: torch.nn.Module, path: str | Path, prefix: str = "model.") -> None:
    """Load a checkpoint's weights into ``module`` strictly, with the file named on a mismatch."""
    try:
        module.load_state_dict(model_state(path, prefix))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model ({str(e).splitlines()[0]} ...)") from None


