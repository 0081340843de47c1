"""Triton kernels for the slot engine on CUDA: decode attention over each row's own columns, top-p without a sort.

Neither runs on the CPU, whose formulas (:func:`lrmsafety.engine.slot_attention.slot_attention`, the sort in
:func:`lrmsafety.engine.sampling.filtered_logits`) the committed organism outputs depend on bit for bit. On a GPU:

- :func:`decode_attention`: the slot engine attends to the first ``width`` columns of every slot, ``width`` being the
  longest live row rounded up; as matrix products every row pays for all of them, and the scores are rounded to the
  model's dtype. The kernel reads each row's columns ``0 .. position`` only (split over several programs, as in flash
  decoding), each key-value head once for its group of query heads, with the scores in float32.
- :func:`top_p_search`: the sort rule's kept set without sorting the vocabulary (a sort of 64 rows of 152k logits
  takes about 1.4 ms on an H100; the search about 0.4 ms).

Both run in Triton's interpreter on CPU tensors too (``TRITON_INTERPRET=1``), which is how the tests check them
without a GPU. ``available`` is False where Triton is not installed (CPU-only torch builds).
"""

from __future__ import annotations

import torch

try:  # Triton comes with torch's CUDA builds
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover (CPU-only installs)
    triton = tl = None

available = triton is not None
SPLIT = 256  # decode_attention: columns per program (a row's columns are split over several programs)
BLOCK_N = 64  # decode_attention: columns per inner step
TOP_P_BLOCK = 1024  # top_p_search: columns per inner step
TOP_P_CHUNKS = 16  # top_p_search: programs per row
TOP_P_SPLITS = 8  # top_p_search: thresholds per pass (a pass narrows the search ninefold)
_LOWEST_KEY = -2139095041 - 1  # one below the int32 key of -inf


if triton is not None:
    @triton.jit
    def _decode_partial_kernel(q_ptr, k_ptr, v_ptr, pos_ptr, o_ptr, ml_ptr, n_splits, kv_heads, scale,
                               stride_qr, stride_qh, stride_kr, stride_kh, stride_kn, stride_vr, stride_vh, stride_vn,
                               stride_pos, GROUPS: tl.constexpr, G_PAD: tl.constexpr, DIM: tl.constexpr,
                               D_PAD: tl.constexpr, BLOCK: tl.constexpr, SPLIT_COLS: tl.constexpr):
        """One (row, key-value head, split): online softmax over the split's columns below the row's length; writes
        the unnormalised output of each query head of the group and its running maximum and sum."""
        row, head, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        length = tl.load(pos_ptr + row * stride_pos) + 1
        start = split * SPLIT_COLS
        end = tl.minimum(start + SPLIT_COLS, length)
        g = tl.arange(0, G_PAD)
        d = tl.arange(0, D_PAD)
        d_ok = d < DIM
        q = tl.load(q_ptr + row * stride_qr + (head * GROUPS + g)[:, None] * stride_qh + d[None, :],
                    mask=(g < GROUPS)[:, None] & d_ok[None, :], other=0.0)
        k_base = k_ptr + row.to(tl.int64) * stride_kr + head * stride_kh
        v_base = v_ptr + row.to(tl.int64) * stride_vr + head * stride_vh
        m_i = tl.full([G_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([G_PAD], tl.float32)
        acc = tl.zeros([G_PAD, D_PAD], tl.float32)
        for n0 in range(start, end, BLOCK):
            n = n0 + tl.arange(0, BLOCK)
            valid = n < end
            k = tl.load(k_base + n[:, None] * stride_kn + d[None, :], mask=valid[:, None] & d_ok[None, :], other=0.0)
            scores = tl.dot(q, tl.trans(k)) * scale
            scores = tl.where(valid[None, :], scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(scores - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_base + n[:, None] * stride_vn + d[None, :], mask=valid[:, None] & d_ok[None, :], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        slot = (row * kv_heads + head) * n_splits + split
        used = start < length
        keep = (g < GROUPS) & used
        tl.store(o_ptr + (slot * G_PAD + g)[:, None] * D_PAD + d[None, :], acc, mask=keep[:, None])
        tl.store(ml_ptr + (slot * 2 * G_PAD) + g, m_i, mask=keep)
        tl.store(ml_ptr + (slot * 2 * G_PAD) + G_PAD + g, l_i, mask=keep)

    @triton.jit
    def _decode_reduce_kernel(o_ptr, ml_ptr, pos_ptr, out_ptr, n_splits, kv_heads, stride_pos, stride_outr,
                              GROUPS: tl.constexpr, G_PAD: tl.constexpr, DIM: tl.constexpr, D_PAD: tl.constexpr,
                              SPLIT_COLS: tl.constexpr):
        """One (row, key-value head): the splits' partial softmaxes combined, in split order."""
        row, head = tl.program_id(0), tl.program_id(1)
        length = tl.load(pos_ptr + row * stride_pos) + 1
        g = tl.arange(0, G_PAD)
        d = tl.arange(0, D_PAD)
        m_all = tl.full([G_PAD], float("-inf"), tl.float32)
        l_all = tl.zeros([G_PAD], tl.float32)
        acc = tl.zeros([G_PAD, D_PAD], tl.float32)
        for split in range(0, tl.cdiv(length, SPLIT_COLS)):
            slot = (row * kv_heads + head) * n_splits + split
            m_s = tl.load(ml_ptr + slot * 2 * G_PAD + g)
            l_s = tl.load(ml_ptr + slot * 2 * G_PAD + G_PAD + g)
            o_s = tl.load(o_ptr + (slot * G_PAD + g)[:, None] * D_PAD + d[None, :])
            m_new = tl.maximum(m_all, m_s)
            alpha = tl.exp(m_all - m_new)
            beta = tl.exp(m_s - m_new)
            l_all = l_all * alpha + l_s * beta
            acc = acc * alpha[:, None] + o_s * beta[:, None]
            m_all = m_new
        out = acc / l_all[:, None]
        tl.store(out_ptr + row * stride_outr + (head * GROUPS + g)[:, None] * DIM + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=(g < GROUPS)[:, None] & (d < DIM)[None, :])


def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, positions: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """One query token per row (``query`` ``[rows, heads, dim]``) over ``key``/``value`` ``[rows, kv_heads, width,
    dim]``, row ``r`` attending to its columns ``0 .. positions[r]``; returns ``[rows, heads, dim]``.

    Two Triton kernels: programs of (row, key-value head, split of ``SPLIT`` columns) run an online softmax over
    their columns (scores in float32, probabilities rounded to the values' dtype for the weighted sum, as in the
    formula), skipping splits past the row's length; then one program per (row, key-value head) combines the
    splits. Query head ``h`` uses key-value head ``h // groups``, as transformers' ``repeat_kv`` orders them.
    """
    rows, heads, dim = query.shape
    kv_heads, width = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    if key.stride(-1) != 1 or value.stride(-1) != 1 or query.stride(-1) != 1:
        raise ValueError("decode_attention needs the last dimension contiguous")
    g_pad = max(16, triton.next_power_of_2(groups))
    d_pad = max(16, triton.next_power_of_2(dim))
    n_splits = triton.cdiv(width, SPLIT)
    partial = torch.empty((rows, kv_heads, n_splits, g_pad, d_pad), dtype=torch.float32, device=query.device)
    stats = torch.empty((rows, kv_heads, n_splits, 2, g_pad), dtype=torch.float32, device=query.device)
    out = torch.empty((rows, heads, dim), dtype=query.dtype, device=query.device)
    _decode_partial_kernel[(rows, kv_heads, n_splits)](
        query, key, value, positions, partial, stats, n_splits, kv_heads, scale,
        query.stride(0), query.stride(1), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2), positions.stride(0),
        GROUPS=groups, G_PAD=g_pad, DIM=dim, D_PAD=d_pad, BLOCK=BLOCK_N, SPLIT_COLS=SPLIT, num_warps=4,
        num_stages=2)
    _decode_reduce_kernel[(rows, kv_heads)](
        partial, stats, positions, out, n_splits, kv_heads, positions.stride(0), out.stride(0),
        GROUPS=groups, G_PAD=g_pad, DIM=dim, D_PAD=d_pad, SPLIT_COLS=SPLIT, num_warps=4)
    return out


if triton is not None:
    @triton.jit
    def _key(x):
        """The float32 ``x`` as an int32 of the same order (negative floats' magnitude bits reversed; -0 as 0)."""
        bits = tl.where(x == 0, 0.0, x).to(tl.int32, bitcast=True)
        return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)

    @triton.jit
    def _chunk_max_kernel(x_ptr, max_ptr, n_cols, stride_x, chunk_cols, BLOCK: tl.constexpr, CHUNKS: tl.constexpr):
        """The maximum of one chunk of one row."""
        row, chunk = tl.program_id(0).to(tl.int64), tl.program_id(1)
        x_row = x_ptr + row * stride_x
        cols = tl.arange(0, BLOCK)
        top = tl.full([BLOCK], float("-inf"), tl.float32)
        for start in range(chunk * chunk_cols, tl.minimum((chunk + 1) * chunk_cols, n_cols), BLOCK):
            top = tl.maximum(top, tl.load(x_row + start + cols, mask=start + cols < n_cols, other=float("-inf")))
        tl.store(max_ptr + row * CHUNKS + chunk, tl.max(top, 0))

    @triton.jit
    def _chunk_sum_kernel(x_ptr, max_ptr, sum_ptr, n_cols, stride_x, chunk_cols, BLOCK: tl.constexpr,
                          CHUNKS: tl.constexpr, DOUBLE: tl.constexpr = False):
        """The sum of ``exp(x - max)`` over one chunk of one row (max: the row's), in float32 or, with ``DOUBLE``,
        float64."""
        row, chunk = tl.program_id(0).to(tl.int64), tl.program_id(1)
        x_row = x_ptr + row * stride_x
        cols = tl.arange(0, BLOCK)
        peak = tl.max(tl.load(max_ptr + row * CHUNKS + tl.arange(0, CHUNKS)), 0)
        if DOUBLE:
            total = tl.zeros([BLOCK], tl.float64)
        else:
            total = tl.zeros([BLOCK], tl.float32)
        for start in range(chunk * chunk_cols, tl.minimum((chunk + 1) * chunk_cols, n_cols), BLOCK):
            x = tl.load(x_row + start + cols, mask=start + cols < n_cols, other=float("-inf"))
            total += tl.exp(x - peak).to(total.dtype)
        tl.store(sum_ptr + row * CHUNKS + chunk, tl.sum(total, 0))

    @triton.jit
    def _search_interval(max_ptr, sum_ptr, state_ptr, part_ptr, row, rest, lowest, FIRST: tl.constexpr,
                         CHUNKS: tl.constexpr, SPLITS: tl.constexpr):
        """The row's maximum and the open interval ``(lo, hi]`` of keys after the previous pass: every program of the
        row computes it alike from the previous pass's interval and its chunks' masses at or below each threshold."""
        peak = tl.max(tl.load(max_ptr + row * CHUNKS + tl.arange(0, CHUNKS)), 0)
        if FIRST:
            lo = lowest.to(tl.int64)  # below every key: no mass at or below it
            hi = _key(peak).to(tl.int64)  # the maximum is kept whatever the mass
        else:
            lo = tl.load(state_ptr + row * 2)
            hi = tl.load(state_ptr + row * 2 + 1)
            target = rest * tl.sum(tl.load(sum_ptr + row * CHUNKS + tl.arange(0, CHUNKS)), 0)
            splits = tl.arange(0, SPLITS)
            thresholds = lo + ((hi - lo) * (splits + 1).to(tl.int64)) // (SPLITS + 1)
            chunks = row * CHUNKS + tl.arange(0, CHUNKS)
            below = tl.sum(tl.load(part_ptr + chunks[:, None] * SPLITS + splits[None, :]), 0)
            kept_from = below > target
            hi = tl.min(tl.where(kept_from, thresholds, hi), 0)
            lo = tl.max(tl.where(kept_from, lo, thresholds), 0)
        return peak, lo, hi

    @triton.jit
    def _search_pass_kernel(x_ptr, max_ptr, sum_ptr, state_in, part_in, state_out, part_out, n_cols, stride_x,
                            chunk_cols, rest, lowest, FIRST: tl.constexpr, BLOCK: tl.constexpr, CHUNKS: tl.constexpr,
                            SPLITS: tl.constexpr):
        """One pass of the search for one chunk of one row: the interval left by the previous pass, cut by
        ``SPLITS`` thresholds; the chunk's mass at or below each."""
        row, chunk = tl.program_id(0).to(tl.int64), tl.program_id(1)
        peak, lo, hi = _search_interval(max_ptr, sum_ptr, state_in, part_in, row, rest, lowest, FIRST, CHUNKS,
                                        SPLITS)
        if chunk == 0:
            tl.store(state_out + row * 2, lo)
            tl.store(state_out + row * 2 + 1, hi)
        splits = tl.arange(0, SPLITS)
        thresholds = (lo + ((hi - lo) * (splits + 1).to(tl.int64)) // (SPLITS + 1)).to(tl.int32)
        x_row = x_ptr + row * stride_x
        cols = tl.arange(0, BLOCK)
        below = tl.zeros([SPLITS, BLOCK], tl.float32)
        for start in range(chunk * chunk_cols, tl.minimum((chunk + 1) * chunk_cols, n_cols), BLOCK):
            x = tl.load(x_row + start + cols, mask=start + cols < n_cols, other=float("-inf"))
            below += tl.where(_key(x)[None, :] <= thresholds[:, None], tl.exp(x - peak)[None, :], 0.0)
        tl.store(part_out + (row * CHUNKS + chunk) * SPLITS + splits, tl.sum(below, 1))

    @triton.jit
    def _top_p_write_kernel(x_ptr, out_ptr, max_ptr, sum_ptr, state_in, part_in, n_cols, stride_x, stride_out,
                            chunk_cols, rest, lowest, BLOCK: tl.constexpr, CHUNKS: tl.constexpr,
                            SPLITS: tl.constexpr):
        """The chunk's logits with those below the found threshold at -inf."""
        row, chunk = tl.program_id(0).to(tl.int64), tl.program_id(1)
        _, lo, hi = _search_interval(max_ptr, sum_ptr, state_in, part_in, row, rest, lowest, False, CHUNKS, SPLITS)
        x_row = x_ptr + row * stride_x
        out_row = out_ptr + row * stride_out
        cols = tl.arange(0, BLOCK)
        for start in range(chunk * chunk_cols, tl.minimum((chunk + 1) * chunk_cols, n_cols), BLOCK):
            x = tl.load(x_row + start + cols, mask=start + cols < n_cols, other=float("-inf"))
            tl.store(out_row + start + cols, tl.where(_key(x) >= hi, x, float("-inf")), mask=start + cols < n_cols)


def top_p_search(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``logits`` (float32, ``[rows, vocab]``) with the tokens outside each row's top-p set at -inf, without a sort.

    The kept set is the sort rule's (:func:`lrmsafety.engine.sampling.filtered_logits` on the CPU): the tokens whose
    logit is at least the smallest threshold at or below which the tokens hold more than ``1 - top_p`` of the row's
    softmax mass; the most likely token always. The masses are sums of ``exp(logit - max)`` in float32 in another
    order than the sort's cumulative sum, so the two rules can differ for a token whose cumulative mass lies within
    float32 rounding of ``1 - top_p`` (and among tokens of exactly equal logits at the boundary, where this keeps all
    of them and the sort some).

    Triton kernels (CUDA, or Triton's interpreter on CPU tensors), each row cut into ``TOP_P_CHUNKS`` chunks of one
    program each: the row's maximum, its softmax sum, then passes of a search over the int32 keys of the floats
    (each pass cuts the open interval at ``TOP_P_SPLITS`` thresholds and sums each chunk's mass at or below them;
    the next pass's programs add the chunks' sums up in a fixed order, so the result is deterministic), then the
    filtered logits. About a dozen sweeps over the logits, which stay in the GPU's L2 cache.
    """
    if logits.dtype != torch.float32 or logits.dim() != 2:
        raise ValueError("top_p_search takes float32 logits of shape [rows, vocab]")
    rows, n_cols = logits.shape
    out = torch.empty_like(logits)
    if not rows:
        return out
    chunks, splits, block = TOP_P_CHUNKS, TOP_P_SPLITS, TOP_P_BLOCK
    chunk_cols = triton.cdiv(triton.cdiv(n_cols, chunks), block) * block
    passes = 1
    while (splits + 1) ** passes < 2 ** 32:  # the interval of keys is at most 2**32 wide
        passes += 1
    maxima = torch.empty((rows, chunks), dtype=torch.float32, device=logits.device)
    sums = torch.empty_like(maxima)
    state = torch.empty((2, rows, 2), dtype=torch.int64, device=logits.device)
    below = torch.empty((2, rows, chunks, splits), dtype=torch.float32, device=logits.device)
    grid = (rows, chunks)
    rest = 1 - float(top_p)
    _chunk_max_kernel[grid](logits, maxima, n_cols, logits.stride(0), chunk_cols, BLOCK=block, CHUNKS=chunks)
    _chunk_sum_kernel[grid](logits, maxima, sums, n_cols, logits.stride(0), chunk_cols, BLOCK=block, CHUNKS=chunks)
    for k in range(passes):
        _search_pass_kernel[grid](logits, maxima, sums, state[(k - 1) % 2], below[(k - 1) % 2], state[k % 2],
                                  below[k % 2], n_cols, logits.stride(0), chunk_cols, rest, _LOWEST_KEY,
                                  FIRST=k == 0, BLOCK=block, CHUNKS=chunks, SPLITS=splits)
    last = (passes - 1) % 2
    _top_p_write_kernel[grid](logits, out, maxima, sums, state[last], below[last], n_cols, logits.stride(0),
                              out.stride(0), chunk_cols, rest, _LOWEST_KEY, BLOCK=block, CHUNKS=chunks,
                              SPLITS=splits)
    return out


if triton is not None:
    @triton.jit
    def _inverse_cdf_kernel(x_ptr, max_ptr, mass_ptr, u_ptr, out_ptr, n_cols, stride_x, chunk_cols,
                            BLOCK: tl.constexpr, CHUNKS: tl.constexpr):
        """One row: the chunk where the cumulative mass first exceeds ``u`` times the row's mass, then the token
        within it (the last token of positive mass when rounding leaves the target at or past the total)."""
        row = tl.program_id(0).to(tl.int64)
        chunks = tl.arange(0, CHUNKS)
        peak = tl.max(tl.load(max_ptr + row * CHUNKS + chunks), 0)
        mass = tl.load(mass_ptr + row * CHUNKS + chunks)
        cumulative = tl.cumsum(mass, 0)
        target = tl.load(u_ptr + row) * tl.sum(mass, 0)
        last_positive = tl.max(tl.where(mass > 0, chunks, 0), 0)
        chunk = tl.minimum(tl.sum((cumulative <= target).to(tl.int32), 0), last_positive)
        base = tl.sum(tl.where(chunks < chunk, mass, 0.0), 0)
        x_row = x_ptr + row * stride_x
        cols = tl.arange(0, BLOCK)
        found = tl.zeros([], tl.int32) + n_cols  # none yet
        last = tl.zeros([], tl.int32)
        for start in range(chunk * chunk_cols, tl.minimum((chunk + 1) * chunk_cols, n_cols), BLOCK):
            x = tl.load(x_row + start + cols, mask=start + cols < n_cols, other=float("-inf"))
            p = tl.exp(x - peak).to(tl.float64)
            past = (base + tl.cumsum(p, 0)) > target
            first = tl.min(tl.where(past, start + cols, n_cols), 0)
            found = tl.minimum(found, first)
            last = tl.maximum(last, tl.max(tl.where(p > 0, start + cols, 0), 0))
            base += tl.sum(p, 0)
        tl.store(out_ptr + row, tl.where(found < n_cols, found, last).to(tl.int64))


def inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per row of ``logits`` (float32 ``[rows, vocab]``, filtered tokens at -inf), the first token whose cumulative
    softmax mass exceeds ``u`` (float64, one per row, in [0, 1)) times the row's mass: the draw of
    :func:`lrmsafety.engine.sampling.inverse_cdf` on the softmax, without the softmax and the float64 cumulative sum
    over the whole vocabulary. The masses ``exp(logit - max)`` are summed in float64 per chunk, then scanned within
    the one chunk that holds the target; the normalisation is left out (a common factor), so a draw can differ from
    the softmax's only where ``u`` lies within float rounding of a boundary. A token of mass 0 is never chosen.
    """
    if logits.dtype != torch.float32 or logits.dim() != 2:
        raise ValueError("inverse_cdf takes float32 logits of shape [rows, vocab]")
    rows, n_cols = logits.shape
    out = torch.empty(rows, dtype=torch.int64, device=logits.device)
    if not rows:
        return out
    chunks, block = TOP_P_CHUNKS, TOP_P_BLOCK
    chunk_cols = triton.cdiv(triton.cdiv(n_cols, chunks), block) * block
    maxima = torch.empty((rows, chunks), dtype=torch.float32, device=logits.device)
    mass = torch.empty((rows, chunks), dtype=torch.float64, device=logits.device)
    u = u.to(device=logits.device, dtype=torch.float64).contiguous()
    grid = (rows, chunks)
    _chunk_max_kernel[grid](logits, maxima, n_cols, logits.stride(0), chunk_cols, BLOCK=block, CHUNKS=chunks)
    _chunk_sum_kernel[grid](logits, maxima, mass, n_cols, logits.stride(0), chunk_cols, BLOCK=block, CHUNKS=chunks,
                            DOUBLE=True)
    _inverse_cdf_kernel[(rows,)](logits, maxima, mass, u, out, n_cols, logits.stride(0), chunk_cols, BLOCK=block,
                                 CHUNKS=chunks)
    return out
