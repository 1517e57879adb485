"""The ``torch`` backend: DyT forward/backward in cache-sized chunks of plain torch ops.

On CPU, DyT costs are fresh-memory page faults, tanh and the per-channel reductions, not DRAM
traffic: eager autograd allocates four full-size temporaries and walks memory ~12 times. Here the
forward allocates only ``y`` and the backward only ``dx``; everything else happens on fp32 scratch
chunks of ~``CHUNK_ELEMS`` elements that stay in L2, with ``tanh(alpha x)`` recomputed (cheaper
than keeping it: keeping it costs a full-size allocation). Per-chunk partial sums are reduced in a
fixed order, so gradients are bitwise reproducible. Works on any device; ``auto`` uses it on CPU.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from bio_speech_dyt.kernels.layout import Layout, layout_of

# 128 Ki fp32 elements = 512 KiB per scratch buffer: two of them and the streamed chunks of
# x / dy / dx fit a 2 MiB L2 (measured: 64 Ki .. 512 Ki elements are within noise on 2 cores).
CHUNK_ELEMS = 1 << 17

_Chunk = tuple[slice, slice]


def _chunks(layout: Layout) -> Iterator[_Chunk]:
    """(batch, spatial) slices covering the ``(B, C, S)`` view, ~``CHUNK_ELEMS`` elements each
    (the first one is the largest)."""
    batch, channels, spatial = layout
    per_batch = channels * spatial
    if per_batch <= CHUNK_ELEMS:
        step = max(1, CHUNK_ELEMS // max(per_batch, 1))
        for b in range(0, batch, step):
            yield slice(b, b + step), slice(None)
    else:
        step = max(1, CHUNK_ELEMS // channels)
        for b in range(batch):
            for s in range(0, spatial, step):
                yield slice(b, b + 1), slice(s, s + step)


def _scratch_buffers(count: int, x3: Tensor, chunks: list[_Chunk]) -> Tensor:
    """``count`` fp32 scratch rows, each as large as the largest chunk of ``x3``."""
    bs, ss = chunks[0]
    return x3.new_empty((count, x3[bs, :, ss].numel()), dtype=torch.float32)


def _scratch(buffer: Tensor, like: Tensor) -> Tensor:
    """A contiguous fp32 view of ``buffer`` shaped like the chunk ``like``."""
    return buffer[: like.numel()].view(like.shape)


def _channel_column(p: Tensor | None, channels: int) -> Tensor | None:
    """A per-channel parameter as an fp32 ``(C, 1)`` column broadcasting over ``(b, C, s)`` chunks."""
    return None if p is None else p.detach().to(torch.float32).reshape(channels, 1)


def forward(x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool) -> Tensor:
    """``weight * tanh(alpha * x) + bias`` for a contiguous ``x``, in ``x.dtype`` (fp32 math)."""
    layout = layout_of(x, channels_last)
    x3 = x.view(layout)
    y = torch.empty_like(x3)
    a = alpha.detach().to(torch.float32)
    w = _channel_column(weight, layout.channels)
    b = _channel_column(bias, layout.channels)
    chunks = list(_chunks(layout))
    scratch = None if x.dtype == torch.float32 else _scratch_buffers(1, x3, chunks)[0]
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
    return y.view(x.shape)


def backward(
    dy: Tensor, x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(dx, dalpha, dweight, dbias)`` for contiguous ``dy``/``x``; sums in fp32, grads in the parameters' dtypes."""
    layout = layout_of(x, channels_last)
    channels = layout.channels
    x3, dy3 = x.view(layout), dy.view(layout)
    dx = torch.empty_like(x3)
    a = alpha.detach().to(torch.float32)
    w = _channel_column(weight, channels)
    scale = a if w is None else w * a  # dx = dy * w * (1 - t^2) * alpha
    chunks = list(_chunks(layout))
    partial = x.new_empty((3, len(chunks), channels), dtype=torch.float32)  # dalpha/w, dweight, dbias per chunk
    t_buf, p_buf = _scratch_buffers(2, x3, chunks)
    for i, (bs, ss) in enumerate(chunks):
        xc, dyc = x3[bs, :, ss], dy3[bs, :, ss]
        t, p = _scratch(t_buf, xc), _scratch(p_buf, xc)
        torch.mul(xc, a, out=t)
        t.tanh_()
        torch.mul(dyc, t, out=p)  # dy t
        if w is not None:
            torch.sum(p, (0, 2), out=partial[1, i])
        if bias is not None:
            torch.sum(dyc, (0, 2), dtype=torch.float32, out=partial[2, i])
        torch.addcmul(dyc, p, t, value=-1.0, out=p)  # dy (1 - t^2)
        torch.mul(p, xc, out=t)
        torch.sum(t, (0, 2), out=partial[0, i])  # per channel; weighted by w below
        torch.mul(p, scale, out=dx[bs, :, ss])
    da = partial[0].sum(0)
    dalpha = (da * w.view(-1) if w is not None else da).sum().reshape(alpha.shape).to(alpha.dtype)
    dweight = partial[1].sum(0).to(weight.dtype) if weight is not None else None
    dbias = partial[2].sum(0).to(bias.dtype) if bias is not None else None
    return dx.view(x.shape), dalpha, dweight, dbias
