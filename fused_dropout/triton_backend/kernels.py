"""Triton kernels of the op table. One forward and one backward kernel, specialised by constexprs (the op's
ACTIVATION, bias and residual; the backward KIND and bias gradient; the compute type; the tile), plus the column
reduction of the bias gradient.

Tensors are seen as [rows, row_len] (row_len = bias length, or numel for a flat view) and cut into [BR, BC] tiles.
The mask of a tile row follows the spec: one tl.randint4x per four consecutive elements (see _tile_keep).
Pointers a specialisation does not read are None (constexpr), so nothing stands in for them.
"""
import triton
import triton.language as tl

from .. import spec


@triton.jit
def _global_index(offset, index):
    """g = offset + index, in uint64: offsets below 2^63 plus indices below 2^63 never wrap there, where an int64
    sum would turn negative past 2^63 and pick another Philox group."""
    return offset.to(tl.uint64) + index.to(tl.uint64)


@triton.jit
def _mask_index_rule(g):
    """The spec's rule: element g takes word w = g & 3 of Philox group q = g >> 2. Returns (q, w)."""
    return g >> 2, g & 3


@triton.jit
def _pick_word(r0, r1, r2, r3, word):
    """r_word for each element; r* are [BR, BC // 4, 1] and word is [BR, 1, 4] (values 0..3)."""
    return tl.where(word == 0, r0, tl.where(word == 1, r1, tl.where(word == 2, r2, r3)))


@triton.jit
def _group_words(seed, group, word):
    """Philox word `word` of each group in `group` ([BR, BC // 4]): one tl.randint4x per group."""
    r0, r1, r2, r3 = tl.randint4x(seed, group)
    return _pick_word(r0[:, :, None], r1[:, :, None], r2[:, :, None], r3[:, :, None], word)


@triton.jit
def _tile_keep(seed, offset, row, col0, rows, row_len, threshold, BR: tl.constexpr, BC: tl.constexpr):
    """Keep decisions of the [BR, BC] tile whose rows are `row` ([BR] int64) and columns col0 .. col0 + BC.

    Row r starts at g_r = offset + r * row_len + col0 = 4 q_r + s_r (the rule applied to g_r). Its element 4j + c has
    g = 4 (q_r + j) + (s_r + c), so the rule applied to s_r + c (0 .. 6) gives its group's distance from q_r + j
    (0 or 1) and its word. Group q_r + j of each row is one randint4x call; when some row starts off a group
    boundary (s_r != 0), the words that spill into the next group come from a second call for q_r + j + 1. Rows
    start on group boundaries when offset and row_len are multiples of 4 (row_len does not matter for a single row).
    """
    row_start = _global_index(offset, row[:, None] * row_len + col0)  # [BR, 1]
    first_group, start_word = _mask_index_rule(row_start)
    group = first_group + tl.arange(0, BC // 4).to(tl.uint64)[None, :]  # [BR, BC // 4]
    next_group, word = _mask_index_rule(start_word[:, :, None] + tl.arange(0, 4)[None, None, :])  # [BR, 1, 4]
    words = _group_words(seed, group, word)
    if ((offset & 3) != 0) | (((row_len & 3) != 0) & (rows > 1)):  # uniform: aligned shapes skip the second call
        words = tl.where(next_group == 0, words, _group_words(seed, group + 1, word))
    keep = words.to(tl.int64) >= threshold
    return tl.reshape(keep, (BR, BC))


@triton.jit
def _activate(v, ACTIVATION: tl.constexpr):
    """The op's activation of the pre-dropout value, in the compute type: the one home of activation math in
    the Triton language (a new activation is one more branch)."""
    if ACTIVATION == "relu":
        v = tl.where(v < 0, 0.0, v)  # NaN stays NaN, as torch.relu does
    else:
        tl.static_assert(ACTIVATION == "identity", "unknown ACTIVATION")
    return v


@triton.jit
def _widen(v, acc_t: tl.constexpr):
    """v in the compute type, exactly. bfloat16 moves its 16 bits into the top half of a float32, exact for every
    value: a cast is too on GPUs, but Triton's interpreter flushes bfloat16 subnormals to zero in a cast."""
    if v.dtype == tl.bfloat16:
        v = (v.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    return v.to(acc_t)


@triton.jit
def _load_widened(pointers, mask, acc_t: tl.constexpr):
    """Every load of a tensor goes through here: masked lanes read 0, values are widened exactly."""
    return _widen(tl.load(pointers, mask=mask, other=0.0), acc_t)


# Compile-time helpers of _round_to: the unsigned integer type of a bit width, and the spec's canonical NaN of a
# format of (total bits, mantissa bits).
_unsigned_type = triton.constexpr_function(tl.core.get_int_dtype)
_canonical_nan_bits = triton.constexpr_function(spec.canonical_nan_bits)


@triton.jit
def _round_to(v, dtype: tl.constexpr):
    """v (compute type) rounded once to `dtype`, to nearest even, a NaN written as the canonical NaN: GPUs and
    the interpreter's numpy disagree on NaN bits, and a GPU conversion makes 0x7FFF of any NaN, so the NaN is
    replaced after the rounding, on the output's bits. bfloat16 is rounded with integer arithmetic: the result is
    the hardware's cvt.rn, and Triton's CPU interpreter (which truncates) computes it too; the NaN replacement
    covers the NaNs that arithmetic would carry into the sign or exponent."""
    if dtype == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        result = (rounded >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        result = v.to(dtype)
    bits_type: tl.constexpr = _unsigned_type(dtype.primitive_bitwidth, signed=False)
    result_bits = result.to(bits_type, bitcast=True)
    canonical_nan = tl.full(result_bits.shape, _canonical_nan_bits(dtype.primitive_bitwidth, dtype.fp_mantissa_width),
                            bits_type)
    return tl.where(v != v, canonical_nan, result_bits).to(dtype, bitcast=True)


@triton.jit
def _scale_value(scale_bits, ACC_F64: tl.constexpr):
    """The scale in the compute type, from its bit pattern (a float argument would be rounded to float32)."""
    if ACC_F64:
        scale = scale_bits.to(tl.int64).to(tl.float64, bitcast=True)
    else:
        scale = scale_bits.to(tl.int32).to(tl.float32, bitcast=True)
    return scale  # one return: two would be compiled, fp64 and fp32, and their types clash


@triton.jit
def _tile_coordinates(rows, row_len, BR: tl.constexpr, BC: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    column_blocks = tl.cdiv(row_len, BC)
    row_block = pid // column_blocks
    col0 = (pid % column_blocks) * BC
    row = row_block * BR + tl.arange(0, BR).to(tl.int64)
    col = col0 + tl.arange(0, BC).to(tl.int64)
    in_bounds = (row[:, None] < rows) & (col[None, :] < row_len)
    index = row[:, None] * row_len + col[None, :]  # int64: tensors over 2^31 elements are fine
    return row_block, row, col0, col, in_bounds, index


@triton.jit(do_not_specialize=["offset"])
def forward_kernel(x_ptr, bias_ptr, residual_ptr, out_ptr, seed_ptr, offset, rows, row_len, threshold, scale_bits,
                   ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                   ACC_F64: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
    """out = [residual +] (keep ? ACTIVATION(x [+ bias]) * scale : 0), rounded once."""
    acc_t = tl.float64 if ACC_F64 else tl.float32
    _, row, col0, col, in_bounds, index = _tile_coordinates(rows, row_len, BR, BC)
    seed = tl.load(seed_ptr)
    keep = _tile_keep(seed, offset, row, col0, rows, row_len, threshold, BR, BC)
    v = _load_widened(x_ptr + index, in_bounds, acc_t)
    if HAS_BIAS:
        v = v + _load_widened(bias_ptr + col, col < row_len, acc_t)[None, :]
    out = tl.where(keep, _activate(v, ACTIVATION) * _scale_value(scale_bits, ACC_F64), 0.0)
    if HAS_RESIDUAL:
        out = _load_widened(residual_ptr + index, in_bounds, acc_t) + out
    tl.store(out_ptr + index, _round_to(out, out_ptr.dtype.element_ty), mask=in_bounds)


@triton.jit(do_not_specialize=["offset"])
def backward_kernel(grad_ptr, y_ptr, seed_ptr, offset, grad_in_ptr, partial_ptr, rows, row_len, threshold, scale_bits,
                    KIND: tl.constexpr, BIAS_GRAD: tl.constexpr, ACC_F64: tl.constexpr,
                    BR: tl.constexpr, BC: tl.constexpr):
    """grad_in = keep ? grad * scale : 0, keep from the mask (KIND "mask") or where the saved output y > 0 (KIND
    "relu_output"); with BIAS_GRAD, also this tile's column sums of grad_in (as stored) into
    partial[row_block, col], reduced later in row-block order."""
    acc_t = tl.float64 if ACC_F64 else tl.float32
    row_block, row, col0, col, in_bounds, index = _tile_coordinates(rows, row_len, BR, BC)
    if KIND == "mask":
        seed = tl.load(seed_ptr)
        keep = _tile_keep(seed, offset, row, col0, rows, row_len, threshold, BR, BC)
    else:
        tl.static_assert(KIND == "relu_output", "unknown backward KIND")
        keep = _load_widened(y_ptr + index, in_bounds, acc_t) > 0
    grad = _load_widened(grad_ptr + index, in_bounds, acc_t)
    grad_in = _round_to(tl.where(keep, grad * _scale_value(scale_bits, ACC_F64), 0.0), grad_in_ptr.dtype.element_ty)
    tl.store(grad_in_ptr + index, grad_in, mask=in_bounds)
    if BIAS_GRAD:
        column_sum = tl.sum(tl.where(in_bounds, _widen(grad_in, acc_t), 0.0), axis=0)
        tl.store(partial_ptr + row_block * row_len + col, column_sum, mask=col < row_len)


@triton.jit
def column_sum_kernel(partial_ptr, out_ptr, row_blocks, row_len, BC: tl.constexpr, ACC_F64: tl.constexpr):
    """out[c] = sum of partial[b, c] over b = 0, 1, ... in that order: deterministic, no atomics."""
    col = tl.program_id(0).to(tl.int64) * BC + tl.arange(0, BC).to(tl.int64)
    in_bounds = col < row_len
    total = tl.zeros((BC,), dtype=tl.float64 if ACC_F64 else tl.float32)
    for block in range(0, row_blocks):
        total += tl.load(partial_ptr + block * row_len + col, mask=in_bounds, other=0.0)
    tl.store(out_ptr + col, _round_to(total, out_ptr.dtype.element_ty), mask=in_bounds)
