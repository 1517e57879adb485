"""The ``triton`` backend: fused DyT forward and backward kernels.

The input is seen as a contiguous ``(B, R, K)`` array, ``K`` the contiguous axis, processed in
``[BLOCK_R, BLOCK_K]`` tiles:

- channels-last ``(..., C)``: ``(1, M, C)``, the channel is the column (``CHANNEL_IS_COL``);
- channels-first ``(N, C, *)``: ``(N, C, S)``, the channel is the row; no transposed copy.

Forward: one pass, reads ``x``, writes ``y``. Backward: one pass reads ``x`` and ``dy``, writes
``dx`` and recomputes ``tanh(alpha x)``; each program owns a block of channels and walks a fixed
set of tiles, accumulating ``dalpha``/``dweight``/``dbias`` in fp32 registers, then writes one
partial row; a second small kernel sums the partial rows in a fixed order and casts to the
parameters' dtypes. No atomics: the same inputs give bitwise the same gradients.

``alpha`` is read from device memory (no host sync). ``tanh`` is built from ``exp2`` (the
interpreter has no tanh) and stays within ~1e-7 of ``torch.tanh`` in fp32: a polynomial near 0,
``1 - 2 / (exp(2|z|) + 1)`` elsewhere; ``1 - tanh^2`` is taken as ``q (2 - q)`` with
``q = 2 / (exp(2|z|) + 1)`` there, so saturated gradients keep their relative accuracy.

Kernels are decorated at import: set ``TRITON_INTERPRET=1`` *before* importing this module to run
them on CPU tensors (``INTERPRETED`` records which it was).
"""
from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from bio_speech_dyt.kernels.layout import layout_of

INTERPRETED: bool = bool(triton.knobs.runtime.interpret)

_TWO_LOG2E = tl.constexpr(2.8853900817779268)  # 2 / ln 2: exp(2|z|) = exp2(2|z| log2 e); jit globals must be constexpr

# Tile sizes (elements per program) and warps; the backward holds three fp32 accumulator tiles.
# Checked with ptxas for sm_90a (no spills): forward ~64 registers, backward ~100 (8 elements per thread).
_FWD_TILE, _FWD_WARPS = 4096, 8
_BWD_TILE, _BWD_WARPS = 2048, 8
_MAX_BLOCK_K = 1024
_PROGRAMS_PER_SM = 4  # backward grid: about this many reduction programs per SM
_INTERPRETER_PROGRAMS = 8


@triton.jit
def _tanh_sech2(z):
    """``(tanh(z), 1 - tanh(z)^2)`` in fp32 from ``exp2`` only."""
    az = tl.abs(z)
    # |z| < 0.625: tanh(z) = z + z^3 P(z^2), a least-squares fit (max rel. error 8e-8 in fp32)
    z2 = z * z
    p = -0.005731194760367736
    p = p * z2 + 0.02066472368372689
    p = p * z2 - 0.053748442015907574
    p = p * z2 + 0.13331561137607584
    p = p * z2 - 0.33333287133484907
    t_small = z + z * z2 * p
    # elsewhere: tanh(|z|) = 1 - q, 1 - tanh^2 = q (2 - q), q = 2 / (exp(2|z|) + 1); inf -> q = 0
    q = 2.0 / (tl.exp2(az * _TWO_LOG2E) + 1.0)
    t_big = 1.0 - q
    t_big = tl.where(z < 0.0, -t_big, t_big)
    small = az < 0.625
    t = tl.where(small, t_small, t_big)
    sech2 = tl.where(small, 1.0 - t_small * t_small, q * (2.0 - q))
    return t, sech2


@triton.jit
def _channel_param(ptr, rows, cols, R, K, CHANNEL_IS_COL: tl.constexpr):
    """A per-channel parameter as an fp32 tile broadcasting against ``[BLOCK_R, BLOCK_K]``."""
    if CHANNEL_IS_COL:
        p = tl.load(ptr + cols, mask=cols < K, other=0.0).to(tl.float32)[None, :]
    else:
        p = tl.load(ptr + rows, mask=rows < R, other=0.0).to(tl.float32)[:, None]
    return p


@triton.jit
def _tile(b, rb, kb, R, K, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Tile (rb, kb) of matrix b of the ``(B, R, K)`` view: row and column indices, the int64 offset
    of its first row, int32 in-tile offsets and the bounds mask."""
    rows = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = kb * BLOCK_K + tl.arange(0, BLOCK_K)
    start = (b * R + rb * BLOCK_R).to(tl.int64) * K
    offs = tl.arange(0, BLOCK_R)[:, None] * K + cols[None, :]
    mask = (rows < R)[:, None] & (cols < K)[None, :]
    return rows, cols, start, offs, mask


@triton.jit
def _dyt_fwd_kernel(
    x_ptr, y_ptr, alpha_ptr, w_ptr, b_ptr,
    R, K, n_rblocks, n_kblocks,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, CHANNEL_IS_COL: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One tile per program: ``y = w * tanh(alpha * x) + b``."""
    pid = tl.program_id(0)
    rows, cols, start, offs, mask = _tile(
        pid // (n_kblocks * n_rblocks), (pid // n_kblocks) % n_rblocks, pid % n_kblocks, R, K, BLOCK_R, BLOCK_K
    )
    x = tl.load(x_ptr + start + offs, mask=mask, other=0.0).to(tl.float32)
    y, _ = _tanh_sech2(tl.load(alpha_ptr).to(tl.float32) * x)
    if HAS_WEIGHT:
        y = y * _channel_param(w_ptr, rows, cols, R, K, CHANNEL_IS_COL)
    if HAS_BIAS:
        y = y + _channel_param(b_ptr, rows, cols, R, K, CHANNEL_IS_COL)
    tl.store(y_ptr + start + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_tile(j, cblock, R, K, n_tiles, n_kblocks, CHANNEL_IS_COL: tl.constexpr, BLOCK_R: tl.constexpr,
              BLOCK_K: tl.constexpr):
    """Start, in-tile offsets and mask of reduction tile ``j`` (< n_tiles) of channel block ``cblock``."""
    if CHANNEL_IS_COL:  # channel block = column block; tiles walk the rows
        _, _, start, offs, mask = _tile(0, j, cblock, R, K, BLOCK_R, BLOCK_K)
    else:  # channel block = row block of every matrix; tiles walk (matrix, column block)
        _, _, start, offs, mask = _tile(j // n_kblocks, cblock, j % n_kblocks, R, K, BLOCK_R, BLOCK_K)
    return start, offs, mask & (j < n_tiles)


@triton.jit
def _dyt_bwd_kernel(
    dy_ptr, x_ptr, dx_ptr, alpha_ptr, w_ptr, part_ptr,
    R, K, C, n_tiles, tiles_per_group, n_kblocks,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, CHANNEL_IS_COL: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Program (g, c): channel block c, tiles g, g + G, ... (< n_tiles); writes dx and row g of
    the fp32 partials ``part = [3, G, C]`` (per-channel sums for dalpha, dweight, dbias). The
    next tile's x and dy are loaded before the current one is computed (twice the bytes in flight)."""
    g = tl.program_id(0)
    n_groups = tl.num_programs(0)
    cblock = tl.program_id(1)
    ch_rows = cblock * BLOCK_R + tl.arange(0, BLOCK_R)  # the channels, if they are rows
    ch_cols = cblock * BLOCK_K + tl.arange(0, BLOCK_K)  # the channels, if they are columns
    alpha = tl.load(alpha_ptr).to(tl.float32)
    if HAS_WEIGHT:
        w = _channel_param(w_ptr, ch_rows, ch_cols, R, K, CHANNEL_IS_COL)
    acc_da = tl.zeros((BLOCK_R, BLOCK_K), dtype=tl.float32)
    acc_dw = tl.zeros((BLOCK_R, BLOCK_K), dtype=tl.float32)
    acc_db = tl.zeros((BLOCK_R, BLOCK_K), dtype=tl.float32)
    start, offs, mask = _bwd_tile(g, cblock, R, K, n_tiles, n_kblocks, CHANNEL_IS_COL, BLOCK_R, BLOCK_K)
    x_next = tl.load(x_ptr + start + offs, mask=mask, other=0.0)
    dy_next = tl.load(dy_ptr + start + offs, mask=mask, other=0.0)
    for i in range(0, tiles_per_group):
        j = g + i * n_groups
        x = x_next.to(tl.float32)
        dy = dy_next.to(tl.float32)
        start, offs, mask = _bwd_tile(j + n_groups, cblock, R, K, n_tiles, n_kblocks, CHANNEL_IS_COL, BLOCK_R, BLOCK_K)
        x_next = tl.load(x_ptr + start + offs, mask=mask, other=0.0)
        dy_next = tl.load(dy_ptr + start + offs, mask=mask, other=0.0)
        t, sech2 = _tanh_sech2(alpha * x)
        if HAS_WEIGHT:
            dz = dy * w * sech2
            acc_dw += dy * t
        else:
            dz = dy * sech2
        if HAS_BIAS:
            acc_db += dy
        acc_da += dz * x
        start, offs, mask = _bwd_tile(j, cblock, R, K, n_tiles, n_kblocks, CHANNEL_IS_COL, BLOCK_R, BLOCK_K)
        tl.store(dx_ptr + start + offs, (dz * alpha).to(dx_ptr.dtype.element_ty), mask=mask)
    if CHANNEL_IS_COL:
        ch = ch_cols
        da, dw, db = tl.sum(acc_da, 0), tl.sum(acc_dw, 0), tl.sum(acc_db, 0)
    else:
        ch = ch_rows
        da, dw, db = tl.sum(acc_da, 1), tl.sum(acc_dw, 1), tl.sum(acc_db, 1)
    row = part_ptr + g.to(tl.int64) * C + ch
    plane = n_groups.to(tl.int64) * C
    tl.store(row, da, mask=ch < C)
    if HAS_WEIGHT:
        tl.store(row + plane, dw, mask=ch < C)
    if HAS_BIAS:
        tl.store(row + 2 * plane, db, mask=ch < C)


@triton.jit
def _dyt_bwd_reduce_kernel(
    part_ptr, dalpha_ptr, dw_ptr, db_ptr, G, C, g_iters, c_iters,
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Sum the ``[3, G, C]`` partials over G in a fixed order; program 0 also reduces dalpha.

    ``g_iters`` / ``c_iters``: ceil(G / BLOCK_G) and ceil(C / BLOCK_C), the loop trip counts."""
    pid = tl.program_id(0)
    cols = pid * BLOCK_C + tl.arange(0, BLOCK_C)
    plane = G * C
    if HAS_WEIGHT:
        dw = _sum_rows(part_ptr + plane, cols, G, C, g_iters, BLOCK_G, BLOCK_C)
        tl.store(dw_ptr + cols, dw.to(dw_ptr.dtype.element_ty), mask=cols < C)
    if HAS_BIAS:
        db = _sum_rows(part_ptr + 2 * plane, cols, G, C, g_iters, BLOCK_G, BLOCK_C)
        tl.store(db_ptr + cols, db.to(db_ptr.dtype.element_ty), mask=cols < C)
    if pid == 0:
        total = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for it in range(0, c_iters):
            ch = it * BLOCK_C + tl.arange(0, BLOCK_C)
            total += _sum_rows(part_ptr, ch, G, C, g_iters, BLOCK_G, BLOCK_C)
        tl.store(dalpha_ptr, tl.sum(total, 0).to(dalpha_ptr.dtype.element_ty))


@triton.jit
def _sum_rows(ptr, cols, G, C, g_iters, BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr):
    """Column sums of the ``[G, C]`` fp32 array at ``ptr`` for ``cols`` (``g_iters`` = ceil(G / BLOCK_G)), in a fixed order."""
    acc = tl.zeros((BLOCK_G, BLOCK_C), dtype=tl.float32)
    for it in range(0, g_iters):
        rows = it * BLOCK_G + tl.arange(0, BLOCK_G)
        mask = (rows < G)[:, None] & (cols < C)[None, :]
        acc += tl.load(ptr + rows[:, None].to(tl.int64) * C + cols[None, :], mask=mask, other=0.0)
    return tl.sum(acc, 0)


class _Grid(NamedTuple):
    """The ``(B, R, K)`` view and its tiling."""

    batch: int
    rows: int
    cols: int
    channel_is_col: bool
    block_r: int
    block_k: int


def _block_k(cols: int) -> int:
    """Largest power-of-two block ≤ 1024 that pads ``cols`` by at most 1/8 (768 -> 256, 1000 -> 1024)."""
    block = min(_MAX_BLOCK_K, triton.next_power_of_2(cols))
    while block > 16 and (triton.cdiv(cols, block) * block - cols) * 8 > cols:
        block //= 2
    return block


def _grid(x: Tensor, channels_last: bool, tile: int) -> _Grid:
    batch, channels, spatial = layout_of(x, channels_last)
    if spatial == 1:  # channels-last, or channels-first without spatial dims: channel is the column
        batch, rows, cols, channel_is_col = 1, batch, channels, True
    else:
        rows, cols, channel_is_col = channels, spatial, False
    block_k = _block_k(cols)
    block_r = min(max(1, tile // block_k), triton.next_power_of_2(rows))
    return _Grid(batch, rows, cols, channel_is_col, block_r, block_k)


def _trip_count(n: int):
    """A loop trip count kernel argument.

    Triton 3.5's interpreter passes int arguments as 1-element arrays whose ``__index__`` fails on
    numpy >= 2.3, so ``range(n)`` breaks there; a numpy scalar is passed through untouched. Loop
    trip counts are therefore separate arguments, used only as ``range`` bounds.
    """
    if not INTERPRETED:
        return n
    import numpy

    return numpy.int32(n)


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _device_guard(x: Tensor):
    """Launch on ``x``'s device (Triton launches on the current CUDA device)."""
    if x.is_cuda:
        return torch.cuda.device(x.device)
    if not INTERPRETED:
        raise RuntimeError(
            "the triton DyT backend needs CUDA tensors; to run it on CPU tensors set TRITON_INTERPRET=1 "
            "before bio_speech_dyt.kernels.triton_dyt is first imported"
        )
    return contextlib.nullcontext()


def forward(x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool) -> Tensor:
    """``weight * tanh(alpha * x) + bias`` for a contiguous ``x``, in ``x.dtype`` (fp32 math)."""
    y = torch.empty_like(x)
    grid = _grid(x, channels_last, _FWD_TILE)
    n_rblocks, n_kblocks = triton.cdiv(grid.rows, grid.block_r), triton.cdiv(grid.cols, grid.block_k)
    with _device_guard(x):
        _dyt_fwd_kernel[(grid.batch * n_rblocks * n_kblocks,)](
            x, y, alpha, weight if weight is not None else x, bias if bias is not None else x,
            grid.rows, grid.cols, n_rblocks, n_kblocks,
            HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None, CHANNEL_IS_COL=grid.channel_is_col,
            BLOCK_R=grid.block_r, BLOCK_K=grid.block_k, num_warps=_FWD_WARPS,
        )
    return y


def backward(
    dy: Tensor, x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(dx, dalpha, dweight, dbias)`` for contiguous ``dy``/``x``; fp32 sums, grads in the parameters' dtypes."""
    grid = _grid(x, channels_last, _BWD_TILE)
    n_rblocks, n_kblocks = triton.cdiv(grid.rows, grid.block_r), triton.cdiv(grid.cols, grid.block_k)
    if grid.channel_is_col:
        channels, n_cblocks, n_tiles = grid.cols, n_kblocks, n_rblocks
    else:
        channels, n_cblocks, n_tiles = grid.rows, n_rblocks, grid.batch * n_kblocks
    target = _INTERPRETER_PROGRAMS if not x.is_cuda else _PROGRAMS_PER_SM * _sm_count(x.device.index or 0)
    n_groups = max(1, min(n_tiles, triton.cdiv(target, n_cblocks)))
    dx = torch.empty_like(x)
    partial = x.new_empty((3, n_groups, channels), dtype=torch.float32)
    dalpha = alpha.new_empty(alpha.shape)
    dweight = weight.new_empty(weight.shape) if weight is not None else None
    dbias = bias.new_empty(bias.shape) if bias is not None else None
    flags = {"HAS_WEIGHT": weight is not None, "HAS_BIAS": bias is not None}
    block_c = min(256, triton.next_power_of_2(channels))
    block_g = min(16, triton.next_power_of_2(n_groups))
    with _device_guard(x):
        _dyt_bwd_kernel[(n_groups, n_cblocks)](
            dy, x, dx, alpha, weight if weight is not None else x, partial,
            grid.rows, grid.cols, channels, n_tiles, _trip_count(triton.cdiv(n_tiles, n_groups)), n_kblocks,
            CHANNEL_IS_COL=grid.channel_is_col, BLOCK_R=grid.block_r, BLOCK_K=grid.block_k,
            num_warps=_BWD_WARPS, **flags,
        )
        _dyt_bwd_reduce_kernel[(triton.cdiv(channels, block_c),)](
            partial, dalpha,
            dweight if dweight is not None else dalpha, dbias if dbias is not None else dalpha,
            n_groups, channels, _trip_count(triton.cdiv(n_groups, block_g)), _trip_count(triton.cdiv(channels, block_c)),
            BLOCK_G=block_g, BLOCK_C=block_c, **flags,
        )
    return dx, dalpha, dweight, dbias
