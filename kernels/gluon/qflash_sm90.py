"""qflash on Hopper (sm90) in Gluon, bit-exact with reference/qflash.py: the same integer arithmetic as
jit/qflash.py, with the work placed by hand.

A program takes BLOCK_M = 64 query rows of one (z, h) (one warpgroup). Int8 Q, K and V^T come from
jit/quantize.py (V transposed, each 16 keys in the P.V operand's order) and reach shared memory by TMA through a
ring of three K/V tile buffers; the next tile's Q.K^T is issued before this tile's softmax runs. Q.K^T and P.V run on
warpgroup MMA (int8 in, int32 out; K and V K-major from shared memory, P from registers, relabelled
as jit/helpers.to_operand_order so that no register moves between threads), the
integer online softmax in the accumulator's registers. Keys past N (the next head's rows, or TMA's zero
fill past the tensor) score NEG_SCORE, so their probability is exactly 0.
Gluon does not run in the Triton interpreter: on the CPU, and off sm90, jit/qflash.py computes the same bits.
"""
from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait

from .. import constants as c
from ..jit.helpers import ROW_EXP_DLIM, ROW_EXP_MUL, ROW_OUT_SCALE

EXP_POLY_A = gl.constexpr(c.EXP_POLY_A)
EXP_POLY_B = gl.constexpr(c.EXP_POLY_B)
EXP_ONE = gl.constexpr(1 << c.EXP_ONE_BITS)
EXP_ONE_BITS = gl.constexpr(c.EXP_ONE_BITS)
FRAC_BASE = gl.constexpr(1 << c.P_BITS)
FRAC_TOP_SHIFT = gl.constexpr(c.FRAC_TOP_SHIFT)
EXP_SHIFT = gl.constexpr(c.EXP_SHIFT)
RECIP_ONE = gl.constexpr(1 << c.RECIP_BITS)
NORM_SHIFT = gl.constexpr(c.RECIP_BITS - c.OUT_FRAC_BITS)
NORM_HALF = gl.constexpr(1 << (c.RECIP_BITS - c.OUT_FRAC_BITS - 1))
NEG_SCORE = gl.constexpr(c.NEG_SCORE)
INT8_MMA_K = gl.constexpr(32)
STAGES = gl.constexpr(3)  # K/V tile buffers: the tile being read, the next one scored early, one copy ahead  # an int8 wgmma consumes 32 of the reduced dimension per instruction


@gluon.jit
def _exp2_split(d, exp_mul, neg_mul_top):
    # jit/qflash_arith.exp2_split: whole = (d * exp_mul) >> 26; u = ~(fraction at the top of a word)
    whole = (d * exp_mul) >> EXP_SHIFT
    u = d.to(gl.uint32, bitcast=True) * neg_mul_top + 0xFFFFFFFF
    inner = EXP_POLY_A + gl.umulhi(u, EXP_POLY_B)
    frac = FRAC_BASE + gl.umulhi(u, inner)
    return frac.to(gl.int32, bitcast=True), whole


@gluon.jit
def _rescale(x, alpha):
    # floor(x * alpha / 2**15) through one 64-bit product
    return ((x.to(gl.int64) * alpha) >> EXP_ONE_BITS).to(x.dtype)


@gluon.jit
def _reciprocal(l):
    # jit/qflash_arith.reciprocal: floor((2**40 + floor(l / 2)) / max(l, 1)), a float64 quotient corrected by one
    den = gl.maximum(l, 1).to(gl.int64)
    num = RECIP_ONE + (l >> 1).to(gl.int64)
    q = (num.to(gl.float64) / den.to(gl.float64)).to(gl.int64)
    r = num - q * den
    return q - (r < 0).to(gl.int64) + (r >= den).to(gl.int64)


@gluon.jit
def _to_operand_order(x):
    # jit/helpers.to_operand_order: keys 16g + 8j + 2c + e to 16g + 4c + 2j + e, where the accumulator's
    # registers already sit as the int8 operand wants them (V's keys are stored in the same order)
    rows: gl.constexpr = x.shape[0]
    keys: gl.constexpr = x.shape[1]
    x = gl.reshape(x, [rows, keys // 16, 2, 4, 2])
    return gl.reshape(gl.permute(x, (0, 1, 3, 2, 4)), [rows, keys])


@gluon.jit
def _softmax_step(s, m_i, l_i, acc, keys, exp_mul, neg_mul_top, exp_dlim, N, p_layout: gl.constexpr,
                  acc_rows: gl.constexpr):
    """One key tile of the integer online softmax on the scores s; returns (p_hi, p_lo, m, l, acc):
    the tile's probabilities as two int8 MMA operands, the running max, and l / acc rescaled."""
    s = gl.where(gl.expand_dims(keys < N, 0), s, NEG_SCORE)
    m_new = gl.maximum(m_i, gl.max(s, axis=1))
    d = gl.minimum(gl.expand_dims(m_new, 1) - s, exp_dlim)
    frac, whole = _exp2_split(d, exp_mul, neg_mul_top)
    p = ((frac >> whole) + 1) >> 1
    d_max = gl.minimum(m_new - m_i, exp_dlim)
    frac_a, whole_a = _exp2_split(d_max, exp_mul, neg_mul_top)
    alpha = gl.where(d_max == 0, EXP_ONE, (frac_a + ((1 << whole_a) >> 1)) >> whole_a)
    l_i = _rescale(l_i, alpha) + gl.sum(p, axis=1)
    acc = _rescale(acc, gl.expand_dims(gl.convert_layout(alpha, acc_rows), 1))
    p_hi = gl.convert_layout(_to_operand_order((p >> 7).to(gl.int8)), p_layout)
    p_lo = gl.convert_layout(_to_operand_order((p & 127).to(gl.int8)), p_layout)
    return p_hi, p_lo, m_new, l_i, acc


@gluon.jit
def _load_kv(k_desc, v_desc, bar, k_buf, v_buf, key_row, vt_row, key_col):
    mbarrier.expect(bar, k_desc.block_type.nbytes + v_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(k_desc, [key_row, 0], bar, k_buf)
    tma.async_copy_global_to_shared(v_desc, [vt_row, key_col], bar, v_buf)


@gluon.jit(do_not_specialize=["Z"])
def qflash_sm90_kernel(q_desc, k_desc, v_desc, O, SCALES, Z, H, N,
                       stride_oz, stride_oh, stride_on, stride_od,
                       HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                       EARLY_SCORE: gl.constexpr, num_warps: gl.constexpr):
    """EARLY_SCORE: tile j + 1's Q.K^T is issued before tile j's softmax (32 more registers a thread)."""
    # -- set-up: layouts, shared buffers, this program's head and image constants; Q and the first tile --
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                       instr_shape=[16, BLOCK_N, INT8_MMA_K])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                       instr_shape=[16, HEAD_DIM, INT8_MMA_K])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=4)
    s_rows: gl.constexpr = gl.SliceLayout(1, s_layout)
    o_rows: gl.constexpr = gl.SliceLayout(1, o_layout)

    zh = gl.program_id(0)
    z = zh // H
    row_start = gl.program_id(1) * BLOCK_M
    exp_mul = gl.load(SCALES + ROW_EXP_MUL * Z + z)
    exp_dlim = gl.load(SCALES + ROW_EXP_DLIM * Z + z)
    out_scale = gl.load(SCALES + ROW_OUT_SCALE * Z + z).to(gl.float32, bitcast=True)
    neg_mul_top = 0 - (exp_mul << FRAC_TOP_SHIFT).to(gl.uint32, bitcast=True)

    q_smem = gl.allocate_shared_memory(gl.int8, [BLOCK_M, HEAD_DIM], q_desc.layout)
    k_smem = gl.allocate_shared_memory(gl.int8, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_smem = gl.allocate_shared_memory(gl.int8, [STAGES, HEAD_DIM, BLOCK_N], v_desc.layout)
    bars = gl.allocate_shared_memory(gl.int64, [STAGES + 1, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES + 1):
        mbarrier.init(bars.index(i), count=1)
    q_bar = bars.index(STAGES)
    key_row = zh * N
    vt_row = zh * HEAD_DIM
    n_tiles = gl.cdiv(N, BLOCK_N)
    mbarrier.expect(q_bar, q_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(q_desc, [key_row + row_start, 0], q_bar, q_smem)
    for t in gl.static_range(STAGES - 1):
        if t < n_tiles:
            _load_kv(k_desc, v_desc, bars.index(t), k_smem.index(t), v_smem.index(t), key_row + t * BLOCK_N, vt_row,
                     t * BLOCK_N)

    m_i = gl.full([BLOCK_M], NEG_SCORE, gl.int32, s_rows)
    l_i = gl.zeros([BLOCK_M], gl.int32, s_rows)
    acc = gl.zeros([BLOCK_M, HEAD_DIM], gl.int32, o_layout)
    zero_s = gl.zeros([BLOCK_M, BLOCK_N], gl.int32, s_layout)
    zero_o = gl.zeros([BLOCK_M, HEAD_DIM], gl.int32, o_layout)
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    mbarrier.wait(q_bar, 0)
    if EARLY_SCORE:
        mbarrier.wait(bars.index(0), 0)
        s_next = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), zero_s, use_acc=False, is_async=True)

    # -- the key tiles: tile j + 2's copy in flight (and, EARLY_SCORE, tile j + 1's Q.K^T) during tile j --
    for j in range(n_tiles):
        stage = j % STAGES
        if EARLY_SCORE:
            s = warpgroup_mma_wait(num_outstanding=0, deps=(s_next, ))
        else:
            mbarrier.wait(bars.index(stage), (j // STAGES) & 1)
            s = warpgroup_mma(q_smem, k_smem.index(stage).permute((1, 0)), zero_s, use_acc=False)
        if j + STAGES - 1 < n_tiles:  # that stage last held tile j - 1, whose MMAs have completed
            ahead = j + STAGES - 1
            _load_kv(k_desc, v_desc, bars.index(ahead % STAGES), k_smem.index(ahead % STAGES),
                     v_smem.index(ahead % STAGES), key_row + ahead * BLOCK_N, vt_row, ahead * BLOCK_N)
        if EARLY_SCORE and j + 1 < n_tiles:
            nxt = (j + 1) % STAGES
            mbarrier.wait(bars.index(nxt), ((j + 1) // STAGES) & 1)
            s_next = warpgroup_mma(q_smem, k_smem.index(nxt).permute((1, 0)), zero_s, use_acc=False, is_async=True)
        p_hi, p_lo, m_i, l_i, acc = _softmax_step(s, m_i, l_i, acc, j * BLOCK_N + offs_n, exp_mul, neg_mul_top,
                                                  exp_dlim, N, p_layout, o_rows)
        v_tile = v_smem.index(stage).permute((1, 0))
        pv = warpgroup_mma(p_hi, v_tile, zero_o, use_acc=False) * 128
        acc += warpgroup_mma(p_lo, v_tile, pv)
    for i in gl.static_range(STAGES + 1):
        mbarrier.invalidate(bars.index(i))

    # -- epilogue: acc / l with 8 fractional bits, times s_v / 2**8, rows past N not stored --
    recip = gl.convert_layout(_reciprocal(l_i), o_rows)
    o = (acc.to(gl.int64) * gl.expand_dims(recip, 1) + NORM_HALF) >> NORM_SHIFT
    out = o.to(gl.int32).to(gl.float32) * out_scale
    offs_m = row_start + gl.arange(0, BLOCK_M, layout=o_rows)
    offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    o_ptrs = (O + z * stride_oz + (zh % H) * stride_oh + gl.expand_dims(offs_m, 1) * stride_on
              + gl.expand_dims(offs_d, 0) * stride_od)
    gl.store(o_ptrs, out.to(O.dtype.element_ty), mask=gl.expand_dims(offs_m < N, 1))
