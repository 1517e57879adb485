"""The ``torch`` backend: DyT forward/backward as a few large passes of plain torch ops.

On CPU, DyT costs are fresh-memory page faults, tanh and the per-channel reductions, plus one
OpenMP fork/join per op: eager autograd allocates four full-size temporaries and runs ~15 ops.
Here the forward allocates only ``y`` (three in-place ops) and the backward only ``dx`` (nine ops
per chunk); ``tanh(alpha x)`` is recomputed (cheaper than keeping it, which costs a full-size
allocation), fp32 scratch is bounded by ``CHUNK_ELEMS`` elements (bf16 / fp16 chunks are
converted to fp32 once, then every op runs on one dtype), and per-chunk partial sums are reduced
in a fixed order, so gradients are bitwise reproducible. Works on any device; ``auto`` uses it on
CPU.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from bio_speech_dyt.kernels.layout import Layout, layout_of

# Elements per chunk (16 MiB of fp32 scratch). Measured on 2 shared cores at 16384 x 768: chunks
# of 2**17 (L2-sized) win by ~7% on an idle machine but lose 5-10x under load, where every op's
# fork/join waits for a descheduled thread; a few large chunks are robust to both.
CHUNK_ELEMS = 1 << 22

_Chunk = tuple[slice, slice]


def _chunks(layout: Layout, size: int) -> Iterator[_Chunk]:
    """(batch, spatial) slices covering the ``(B, C, S)`` view, ~``size`` elements each
    (the first one is the largest)."""
    batch, channels, spatial = layout
    per_batch = channels * spatial
    if per_batch <= size:
        step = max(1, size // max(per_batch, 1))
        for b in range(0, batch, step):
            yield slice(b, b + step), slice(None)
    else:
        step = max(1, size // channels)
        for b in range(batch):
            for s in range(0, spatial, step):
                yield slice(b, b + 1), slice(s, s + step)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """fp32 math for fp32 / bf16 / fp16 inputs; float64 stays float64."""
    return torch.promote_types(x.dtype, torch.float32)


def _scratch_buffers(count: int, x3: Tensor, chunks: list[_Chunk]) -> Tensor:
    """``count`` scratch rows in the compute dtype, each as large as the largest chunk of ``x3``."""
    bs, ss = chunks[0]
    return x3.new_empty((count, x3[bs, :, ss].numel()), dtype=_compute_dtype(x3))


def _scratch(buffer: Tensor, like: Tensor) -> Tensor:
    """A contiguous view of ``buffer`` shaped like the chunk ``like``."""
    return buffer[: like.numel()].view(like.shape)


def _channel_column(p: Tensor | None, x: Tensor, channels: int) -> Tensor | None:
    """A per-channel parameter as a ``(C, 1)`` column in the compute dtype, broadcasting over ``(b, C, s)`` chunks."""
    return None if p is None else p.detach().to(_compute_dtype(x)).reshape(channels, 1)


def forward(x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool) -> Tensor:
    """``weight * tanh(alpha * x) + bias`` for a contiguous ``x``, in ``x.dtype`` (fp32 or wider math)."""
    layout = layout_of(x, channels_last)
    x3 = x.view(layout)
    out = torch.empty_like(x)  # returned as allocated: a view would forbid in-place edits downstream
    y = out.view(layout)
    a = alpha.detach().to(_compute_dtype(x))
    w = _channel_column(weight, x, layout.channels)
    b = _channel_column(bias, x, layout.channels)
    in_place = x.dtype == _compute_dtype(x)  # compute in y itself: one chunk, no scratch
    chunks = list(_chunks(layout, x.numel() if in_place else CHUNK_ELEMS))
    scratch = None if in_place else _scratch_buffers(1, x3, chunks)[0]
    for bs, ss in chunks:
        yc = y[bs, :, ss]
        t = yc if scratch is None else _scratch(scratch, yc)
        torch.mul(x3[bs, :, ss], a, out=t)
        t.tanh_()
        if w is not None and b is not None:
            torch.addcmul(b, t, w, out=t)
        elif w is not None:
            t.mul_(w)
        elif b is not None:
            t.add_(b)
        if t is not yc:
            yc.copy_(t)
    return out


def backward(
    dy: Tensor, x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(dx, dalpha, dweight, dbias)`` for contiguous ``dy``/``x``; sums in fp32 (or wider), grads in the parameters' dtypes."""
    layout = layout_of(x, channels_last)
    channels = layout.channels
    x3, dy3 = x.view(layout), dy.view(layout)
    dx_out = torch.empty_like(x)
    dx = dx_out.view(layout)
    a = alpha.detach().to(_compute_dtype(x))
    w = _channel_column(weight, x, channels)
    scale = a if w is None else w * a  # dx = dy * w * (1 - t^2) * alpha
    chunks = list(_chunks(layout, CHUNK_ELEMS))
    partial = x.new_empty((3, len(chunks), channels), dtype=_compute_dtype(x))  # dalpha/w, dweight, dbias per chunk
    upcast = x.dtype != partial.dtype  # bf16 / fp16: one conversion pass each, then uniform-dtype ops
    buffers = _scratch_buffers(4 if upcast else 2, x3, chunks)
    for i, (bs, ss) in enumerate(chunks):
        xc, dyc = x3[bs, :, ss], dy3[bs, :, ss]
        t, p = _scratch(buffers[0], xc), _scratch(buffers[1], xc)
        if upcast:
            xc, dyc = _scratch(buffers[2], xc).copy_(xc), _scratch(buffers[3], dyc).copy_(dyc)
        torch.mul(xc, a, out=t)
        t.tanh_()
        torch.mul(dyc, t, out=p)  # dy t
        if w is not None:
            torch.sum(p, (0, 2), out=partial[1, i])
        if bias is not None:
            torch.sum(dyc, (0, 2), out=partial[2, i])
        torch.addcmul(dyc, p, t, value=-1.0, out=p)  # dy (1 - t^2)
        torch.mul(p, xc, out=t)
        torch.sum(t, (0, 2), out=partial[0, i])  # per channel; weighted by w below
        torch.mul(p, scale, out=dx[bs, :, ss])
    da = partial[0].sum(0)
    dalpha = (da * w.view(-1) if w is not None else da).sum().reshape(alpha.shape).to(alpha.dtype)
    dweight = partial[1].sum(0).to(weight.dtype) if weight is not None else None
    dbias = partial[2].sum(0).to(bias.dtype) if bias is not None else None
    return dx_out, dalpha, dweight, dbias
