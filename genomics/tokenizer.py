"""DNA character tokenizer with HyenaDNA's ids, reverse complement, and the sequence normaliser.

Ids match HyenaDNA's character tokenizer so checkpoints interoperate::

    [CLS]0 [SEP]1 [BOS]2 [MASK]3 [PAD]4 [RESERVED]5 [UNK]6 A7 C8 G9 T10 N11

EOS is [SEP]. The vocabulary has 12 entries; embeddings are padded to 16 rows.

Everything works on numpy lookup tables, so tokenizing a 1 kb window costs microseconds.
"""
from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import torch

CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = 0, 1, 2, 3, 4, 5, 6
A_ID, C_ID, G_ID, T_ID, N_ID = 7, 8, 9, 10, 11
EOS_ID = SEP_ID
VOCAB_SIZE = 12
PADDED_VOCAB_SIZE = 16
BASE_IDS = (A_ID, C_ID, G_ID, T_ID)
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
ID_TO_TOKEN = SPECIAL_TOKENS + ("A", "C", "G", "T", "N")

#: IUPAC ambiguity codes (beyond N); the normaliser maps them to N and counts them.
IUPAC_AMBIGUITY = "RYSWKMBDHV"

Padding = Literal["left", "right"] | None
ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


class SequenceError(ValueError):
    """A sequence holds a character that is neither a base, N, nor an IUPAC ambiguity code."""


def _build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    normalise = np.zeros(256, dtype=np.uint8)  # byte -> canonical upper-case byte; 0 = invalid
    for ch in "ACGTN":
        normalise[ord(ch)] = normalise[ord(ch.lower())] = ord(ch)
    for ch in IUPAC_AMBIGUITY:
        normalise[ord(ch)] = normalise[ord(ch.lower())] = ord("N")
    to_id = np.full(256, 255, dtype=np.uint8)  # canonical byte -> token id; 255 = invalid
    for i, ch in enumerate("ACGTN"):
        to_id[ord(ch)] = A_ID + i
    complement = np.arange(PADDED_VOCAB_SIZE, dtype=np.int64)
    complement[[A_ID, C_ID, G_ID, T_ID]] = [T_ID, G_ID, C_ID, A_ID]
    return normalise, to_id, complement


_NORMALISE, _BYTE_TO_ID, _COMPLEMENT = _build_tables()
_COMPLEMENT_TORCH = torch.from_numpy(_COMPLEMENT)
_ID_TO_BYTE = np.full(PADDED_VOCAB_SIZE, ord("?"), dtype=np.uint8)
_ID_TO_BYTE[A_ID : N_ID + 1] = np.frombuffer(b"ACGTN", dtype=np.uint8)
_STR_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def normalise_bytes(
    data: bytes | bytearray | np.ndarray, *, source: str = "<sequence>", record: str = "?", offset: int = 0
) -> tuple[np.ndarray, int, int]:
    """Canonicalise raw sequence bytes: soft-masked lower case → upper case, IUPAC codes → N.

    Returns ``(canonical uint8 array of b"ACGTN", n_iupac, n_softmasked)``. Any other byte raises
    :class:`SequenceError` naming ``source`` (file), ``record`` and the 1-based position
    (``offset`` = number of bases of the record before ``data``).
    """
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    out = _NORMALISE[raw]
    bad = np.flatnonzero(out == 0)
    if bad.size:
        i = int(bad[0])
        raise SequenceError(
            f"{source}: record {record}: invalid character {_shown(raw, i)} at position {offset + i + 1:,} "
            "(expected A/C/G/T/N or an IUPAC code, any case)"
        )
    n_iupac = int(np.count_nonzero((out == ord("N")) & (raw != ord("N")) & (raw != ord("n"))))
    n_lower = int(np.count_nonzero(raw >= ord("a")))
    return out, n_iupac, n_lower


def _shown(raw: np.ndarray, i: int) -> str:
    """The character starting at byte ``i`` as the user typed it: a UTF-8 sequence decoded (``'é'``,
    not ``'Ã'``), an undecodable byte as ``byte 0xNN``."""
    if raw[i] < 0x80:
        return repr(chr(raw[i]))
    text = bytes(raw[i : i + 4]).decode("utf-8", "replace")
    return repr(text[0]) if text[0] != "\ufffd" else f"byte 0x{int(raw[i]):02x}"


def normalise_sequence(seq: str, *, source: str = "<sequence>", record: str = "?") -> tuple[str, int]:
    """String form of :func:`normalise_bytes`: ``(upper-case ACGTN string, n_iupac)``."""
    try:
        data = seq.encode("ascii")
    except UnicodeEncodeError:
        i = next(i for i, ch in enumerate(seq) if ord(ch) > 127)
        raise SequenceError(f"{source}: record {record}: invalid character {seq[i]!r} at position {i + 1:,}") from None
    out, n_iupac, _ = normalise_bytes(data, source=source, record=record)
    return out.tobytes().decode("ascii"), n_iupac


def bytes_to_ids(canonical: np.ndarray) -> np.ndarray:
    """Canonical ``b"ACGTN"`` bytes (see :func:`normalise_bytes`) → uint8 token ids."""
    ids = _BYTE_TO_ID[canonical]
    if ids.size and int(ids.max()) == 255:
        raise SequenceError("bytes_to_ids: input is not canonical (normalise it first)")
    return ids


def complement_ids(ids: ArrayOrTensor) -> ArrayOrTensor:
    """A↔T, C↔G on token ids; N and special tokens map to themselves."""
    if isinstance(ids, torch.Tensor):
        return _COMPLEMENT_TORCH.to(ids.device)[ids.long()].to(ids.dtype)
    return _COMPLEMENT[ids].astype(ids.dtype, copy=False)


def reverse_complement_ids(ids: ArrayOrTensor) -> ArrayOrTensor:
    """Complement and flip along the last dimension (padding moves to the other side)."""
    comp = complement_ids(ids)
    if isinstance(comp, torch.Tensor):
        return comp.flip(-1)
    return np.ascontiguousarray(comp[..., ::-1])


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA string (case kept; other characters kept as they are)."""
    return seq.translate(_STR_COMPLEMENT)[::-1]


class DNATokenizer:
    """Character-level DNA tokenizer (HyenaDNA ids).

    ``encode`` accepts any case and IUPAC codes (→ N); other characters raise :class:`SequenceError`.
    Sequences longer than ``max_length`` keep their first bases (and the EOS when ``add_eos``);
    ``padding`` adds [PAD] on the chosen side up to ``max_length``.
    """

    vocab_size = VOCAB_SIZE
    pad_id = PAD_ID
    eos_id = EOS_ID
    mask_id = MASK_ID

    def encode(
        self, seq: str, *, max_length: int | None = None, padding: Padding = None, add_eos: bool = False
    ) -> np.ndarray:
        canonical, _ = normalise_sequence(seq)
        ids = bytes_to_ids(np.frombuffer(canonical.encode("ascii"), dtype=np.uint8)).astype(np.int64)
        if add_eos:
            ids = np.append(ids, EOS_ID)
        if max_length is not None and ids.size > max_length:
            ids = np.append(ids[: max_length - 1], EOS_ID) if add_eos else ids[:max_length]
        if padding is not None:
            if max_length is None:
                raise ValueError("padding needs max_length")
            ids = pad_ids(ids, max_length, padding)
        return ids

    def decode(self, ids: np.ndarray | torch.Tensor | list[int], *, skip_special: bool = True) -> str:
        """Token ids → string; [PAD] always dropped, other specials dropped unless ``skip_special=False``."""
        arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64).ravel()
        arr = arr[arr != PAD_ID]
        if skip_special:
            return _ID_TO_BYTE[arr[arr >= A_ID]].tobytes().decode("ascii")
        return "".join(ID_TO_TOKEN[i] for i in arr)


def padded_vocab_size(vocab_size: int = VOCAB_SIZE, multiple: int = 8) -> int:
    """Embedding rows: the vocabulary rounded up to a multiple (HyenaDNA / Caduceus pad 12 to 16)."""
    return (vocab_size + multiple - 1) // multiple * multiple


def pad_ids(ids: np.ndarray, length: int, side: Literal["left", "right"]) -> np.ndarray:
    """Pad a 1-D id array with [PAD] to ``length`` on ``side`` (``ids`` must not be longer)."""
    if side not in ("left", "right"):
        raise ValueError(f"padding must be 'left' or 'right', got {side!r}")
    if ids.size > length:
        raise ValueError(f"sequence of {ids.size} tokens is longer than {length}")
    out = np.full(length, PAD_ID, dtype=ids.dtype)
    if side == "left":
        out[length - ids.size :] = ids
    else:
        out[: ids.size] = ids
    return out
