"""Triton kernels of the op table. One forward and one backward kernel, specialised by constexprs (the op's
ACTIVATION, bias and residual; the backward KIND and bias gradient; the compute type; the tile; the mask geometry's
RUN_COUNT), plus the column reduction of the bias gradient.

Tensors are seen as [rows, row_len] (row_len = bias length, or numel for a flat view) and cut into [BR, BC] tiles,
held as [BR, BC // 4, 4]: element 4j + c of a tile row at [row, j, c]. The mask of a tile row follows the spec: one
Philox call per four consecutive elements (see _tile_keep), whose four words land in that last dimension where the
elements are, so no layout conversion moves them between threads. Under a mask geometry (RUN_COUNT > 0, the runs
of csrc/mask_runs.h as scalar arguments extent_r, stride_r) an element's mask index is computed from its flat index
(see _runs_keep); RUN_COUNT = 0, the flat mask, compiles exactly as the kernels did before geometries.
Pointers a specialisation does not read are None (constexpr), so nothing stands in for them.
"""
import triton
import triton.language as tl

from .. import spec
from ..geometry import MAX_KERNEL_RUNS
from . import activation_math


@triton.jit
def _global_index(offset, index):
    """g = offset + index, in uint64: offsets below 2^63 plus indices below 2^63 never wrap there, where an int64
    sum would turn negative past 2^63 and pick another Philox group."""
    return offset.to(tl.uint64) + index.to(tl.uint64)


@triton.jit
def _mask_index_rule(g):
    """The spec's rule: element g takes word w = g & 3 of Philox group q = g >> 2. Returns (q, w)."""
    return g >> 2, g & 3


# Philox4x32-10 constants (docs/mask_spec.md), as compile-time constants of the kernels.
_ROUND_A = tl.constexpr(spec.PHILOX_ROUND_A)
_ROUND_B = tl.constexpr(spec.PHILOX_ROUND_B)
_KEY_A = tl.constexpr(spec.PHILOX_KEY_A)
_KEY_B = tl.constexpr(spec.PHILOX_KEY_B)
_ROUNDS = tl.constexpr(spec.PHILOX_ROUNDS)


@triton.jit
def _mulhilo(constant: tl.constexpr, value):
    """High and low 32 bits of constant * value (uint32): one 32x32 -> 64-bit product, a single wide multiply on
    GPUs, where tl.umulhi plus a 32-bit multiply (as tl.randint4x computes them) cost two."""
    product = value.to(tl.uint64) * constant
    return (product >> 32).to(tl.uint32), product.to(tl.uint32)


@triton.jit
def _philox(seed, group):
    """The four Philox4x32-10 words of each group (uint64) under the key `seed` (int64 bits): tl.randint4x(seed,
    group) bit for bit (tests/test_triton.py checks it), with one wide multiply per product."""
    seed = seed.to(tl.uint64)
    k0 = seed.to(tl.uint32)
    k1 = (seed >> 32).to(tl.uint32)
    c0 = group.to(tl.uint32)
    c1 = (group >> 32).to(tl.uint32)
    c2 = c0 * 0  # the counter's upper words are 0: the first round folds away
    c3 = c2
    for _ in tl.static_range(_ROUNDS):
        hi_b, lo_b = _mulhilo(_ROUND_B, c2)
        hi_a, lo_a = _mulhilo(_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = k0 + _KEY_A
        k1 = k1 + _KEY_B
    return c0, c1, c2, c3


@triton.jit
def _words_in_element_order(seed, group, BR: tl.constexpr, BC: tl.constexpr):
    """[BR, BC // 4, 4] words of rows that start on a group boundary: element 4j + c takes word c of group j of its
    row. The four words are joined into that order ([.., a, b] holds word 2a + b): no per-element selects."""
    r0, r1, r2, r3 = _philox(seed, group)
    return tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), (BR, BC // 4, 4))


@triton.jit
def _pick_word(r0, r1, r2, r3, word):
    """r_word for each element; r* are [BR, BC // 4, 1] and word is [BR, 1, 4] (values 0..3)."""
    return tl.where(word == 0, r0, tl.where(word == 1, r1, tl.where(word == 2, r2, r3)))


@triton.jit
def _group_words(seed, group, word):
    """Philox word `word` of each group in `group` ([BR, BC // 4]): one Philox call per group."""
    r0, r1, r2, r3 = _philox(seed, group)
    return _pick_word(r0[:, :, None], r1[:, :, None], r2[:, :, None], r3[:, :, None], word)


@triton.jit
def _tile_keep(seed, offset, row, col0, rows, row_len, threshold, BR: tl.constexpr, BC: tl.constexpr):
    """Keep decisions ([BR, BC // 4, 4]) of the [BR, BC] tile whose rows are `row` ([BR] int64) and columns col0 ..
    col0 + BC, under the flat mask (m(e) = e): row r's elements take g = offset + r * row_len + col0 + k. Every row
    starts on a group boundary when offset and row_len are multiples of 4, or in a single row: the fast path."""
    row_start = _global_index(offset, row[:, None] * row_len + col0)  # [BR, 1]
    first_group, start_word = _mask_index_rule(row_start)
    group = first_group + tl.arange(0, BC // 4).to(tl.uint64)[None, :]  # [BR, BC // 4]
    aligned = ((offset & 3) == 0) & (((row_len & 3) == 0) | (rows == 1))  # uniform over the tile
    return _consecutive_keep(seed, group, start_word, aligned, threshold, BR, BC)


@triton.jit
def _consecutive_keep(seed, group, start_word, aligned, threshold, BR: tl.constexpr, BC: tl.constexpr):
    """Keep decisions ([BR, BC // 4, 4]) of tile rows whose elements take consecutive global indices: row r starts
    at g_r = 4 q_r + s_r (the rule applied to g_r), `group` = q_r + j ([BR, BC // 4]) and `start_word` = s_r ([BR,
    1]).

    When every row starts on a group boundary (`aligned`: every s_r = 0), element 4j + c of a row takes word c of
    group q_r + j: the fast path. Otherwise its g = 4 (q_r + j) + (s_r + c), so the rule applied to s_r + c (0 .. 6)
    gives its group's distance from q_r + j (0 or 1) and its word; the words that spill into the next group come
    from a second call for q_r + j + 1.

    keep <=> word >= T in 32 bits: T = floor(p * 2^32) arrives clamped to 2^32 - 1, so at p = 1 (T = 2^32) a word
    of 0xFFFFFFFF is kept here: the kernels then read their input as 0 (see _reads_input), which makes a kept
    element the same +0 as a dropped one.
    """
    if aligned:
        words = _words_in_element_order(seed, group, BR, BC)
    else:
        next_group, word = _mask_index_rule(start_word[:, :, None] + tl.arange(0, 4)[None, None, :])  # [BR, 1, 4]
        words = tl.where(next_group == 0, _group_words(seed, group, word), _group_words(seed, group + 1, word))
    return words >= threshold.to(tl.uint32)


@triton.jit
def _mask_index(e, runs, RUN_COUNT: tl.constexpr):
    """The mask index m(e) of each element e (int64, any shape) under the runs (extent_0, stride_0, ...,
    outermost first; csrc/mask_runs.h): the digits of e in the extents' mixed radix, innermost first, weighted by
    the strides. The outermost digit needs no modulo: e / inner_0 < extent_0 for every e < numel."""
    m = e * 0
    for step in tl.static_range(RUN_COUNT - 1):  # run r = RUN_COUNT - 1 - step
        m += (e % runs[2 * (RUN_COUNT - 1 - step)]) * runs[2 * (RUN_COUNT - 1 - step) + 1]
        e = e // runs[2 * (RUN_COUNT - 1 - step)]
    return m + e * runs[1]


@triton.jit
def _element_words(seed, g):
    """The Philox word of each element of global indices g (uint64, any shape): one Philox call per element."""
    group, word = _mask_index_rule(g)
    r0, r1, r2, r3 = _philox(seed, group)
    return _pick_word(r0, r1, r2, r3, word)


@triton.jit
def _element_keep(seed, offset, runs, row, col0, row_len, threshold, RUN_COUNT: tl.constexpr, BR: tl.constexpr,
                  BC: tl.constexpr):
    """Keep decisions ([BR, BC // 4, 4]) of the tile, one Philox call per element. A quarter of the tile at a time
    (the elements 4j + c, for c = 0 .. 3), in a loop the compiler does not unroll: the four words of a call are live
    for a quarter of the elements, as in the flat path, not for all of them (which spills registers at 32 elements
    per thread)."""
    words = tl.zeros((BR, BC // 4, 4), dtype=tl.uint32)
    position = tl.arange(0, 4)[None, None, :]
    for c in tl.range(0, 4, loop_unroll_factor=1):
        e = row[:, None] * row_len + col0 + (tl.arange(0, BC // 4) * 4 + c).to(tl.int64)[None, :]
        word = _element_words(seed, _global_index(offset, _mask_index(e, runs, RUN_COUNT)))  # [BR, BC // 4]
        words = tl.where(position == c, word[:, :, None], words)
    return words >= threshold.to(tl.uint32)


@triton.jit
def _shared_in_chunks_keep(seed, offset, runs, row, col0, row_len, inner_extent, threshold,
                           RUN_COUNT: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
    """Keep decisions ([BR, BC // 4, 4]) of the tile when the innermost run has stride 0 and an extent E >= 4: the
    four consecutive elements of a chunk (4j .. 4j + 3) then lie in at most two of its stretches, one decision
    each, those of the chunk's first and last elements (two Philox calls per chunk, not four). An element takes
    the first's while it is in the first's stretch (the first's position in it plus c < E), else the last's."""
    first = row[:, None] * row_len + col0 + (tl.arange(0, BC // 4) * 4).to(tl.int64)[None, :]  # [BR, BC // 4]
    first_word = _element_words(seed, _global_index(offset, _mask_index(first, runs, RUN_COUNT)))
    last_word = _element_words(seed, _global_index(offset, _mask_index(first + 3, runs, RUN_COUNT)))
    in_first_stretch = (first % inner_extent)[:, :, None] + tl.arange(0, 4)[None, None, :] < inner_extent
    words = tl.where(in_first_stretch, first_word[:, :, None], last_word[:, :, None])
    return words >= threshold.to(tl.uint32)


@triton.jit
def _runs_keep(seed, offset, runs, row, col0, rows, row_len, threshold, RUN_COUNT: tl.constexpr,
               BR: tl.constexpr, BC: tl.constexpr):
    """Keep decisions ([BR, BC // 4, 4]) of the tile under a mask geometry: element e (row * row_len + column)
    takes g = offset + m(e) (_mask_index). Lanes past the tensor's end compute words nobody stores; rows past it do
    not count in the choice of path.

    Where each tile row's in-bounds elements lie inside one stretch of the innermost run (extent E, stride S), m
    steps by S along the row from the row's first element's m: with S = 1 the row takes consecutive words, the
    flat path's Philox calls (_consecutive_keep); with S = 0 the whole row shares one decision, one Philox call
    per row. Tiles across the ends of an innermost run of stride 0 take two calls per four elements
    (_shared_in_chunks_keep); elsewhere (other strides, runs of fewer than 4 elements) each element takes its own."""
    row_first = row * row_len + col0  # [BR] int64: e of each row's first element in the tile
    row_start = _global_index(offset, _mask_index(row_first, runs, RUN_COUNT))[:, None]  # [BR, 1]
    inner_extent = runs[2 * RUN_COUNT - 2]
    inner_stride = runs[2 * RUN_COUNT - 1]
    columns = tl.minimum(row_len - col0, BC)  # the in-bounds columns of the tile's rows
    in_one_stretch = tl.min(((row_first % inner_extent + columns <= inner_extent) | (row >= rows)).to(tl.int32)) == 1
    if in_one_stretch & (inner_stride == 1):
        first_group, start_word = _mask_index_rule(row_start)
        group = first_group + tl.arange(0, BC // 4).to(tl.uint64)[None, :]  # [BR, BC // 4]
        aligned = tl.max(tl.where(row[:, None] < rows, start_word, 0)) == 0
        keep = _consecutive_keep(seed, group, start_word, aligned, threshold, BR, BC)
    elif in_one_stretch & (inner_stride == 0):
        row_keep = _element_words(seed, row_start) >= threshold.to(tl.uint32)  # [BR, 1]
        keep = tl.broadcast_to(row_keep[:, :, None], (BR, BC // 4, 4))
    elif (inner_stride == 0) & (inner_extent >= 4):
        keep = _shared_in_chunks_keep(seed, offset, runs, row, col0, row_len, inner_extent, threshold, RUN_COUNT,
                                      BR, BC)
    else:
        keep = _element_keep(seed, offset, runs, row, col0, row_len, threshold, RUN_COUNT, BR, BC)
    return keep


@triton.jit
def _keep(seed, offset, runs, row, col0, rows, row_len, threshold, RUN_COUNT: tl.constexpr,
          BR: tl.constexpr, BC: tl.constexpr):
    """The tile's keep decisions under the geometry the launcher chose: RUN_COUNT = 0 is the flat mask (m(e) = e,
    the fast path, compiled exactly as without geometries), 1 .. 6 runs of a mask geometry."""
    if RUN_COUNT == 0:
        keep = _tile_keep(seed, offset, row, col0, rows, row_len, threshold, BR, BC)
    else:
        keep = _runs_keep(seed, offset, runs, row, col0, rows, row_len, threshold, RUN_COUNT, BR, BC)
    return keep


@triton.jit
def _reads_input(scale_bits):
    """False exactly when p = 1 (scale 0): then x and bias (forward) or the gradient (mask backward) are read as
    0, so a kept element is 0 * 0 = +0 like a dropped one, whatever the input holds (inf * 0 would be NaN). This
    stands in for a keep_any flag (csrc/dropout_math.h's KeepRule), costing one predicate per vector load instead of
    one select per element; the result is the spec's for p = 1: 0, or residual + 0."""
    return scale_bits != 0


@triton.jit
def _activate_and_drop(v, keep, scale, ACTIVATION: tl.constexpr):
    """keep ? ACTIVATION(v) * scale : 0 in the compute type: the kernels' one choice of activation (a new activation
    is one more branch; the smooth ones' math is activation_math's). relu's zeros are written as part of the drop's
    select: relu(v) * scale is +0 exactly where v < 0 (the scale is finite and not negative). NaN and -0.0 pass as
    torch.relu leaves them (neither is < 0)."""
    if ACTIVATION == "relu":
        out = tl.where(keep & ~(v < 0), v * scale, 0.0)
    elif ACTIVATION == "gelu":
        out = tl.where(keep, activation_math.gelu(v) * scale, 0.0)
    elif ACTIVATION == "gelu_tanh":
        out = tl.where(keep, activation_math.gelu_tanh(v) * scale, 0.0)
    elif ACTIVATION == "silu":
        out = tl.where(keep, activation_math.silu(v) * scale, 0.0)
    else:
        tl.static_assert(ACTIVATION == "identity", "unknown ACTIVATION")
        out = tl.where(keep, v * scale, 0.0)
    return out


@triton.jit
def _derivative(v, ACTIVATION: tl.constexpr):
    """ACTIVATION'(v), for the backward of the ops that save their input."""
    if ACTIVATION == "gelu":
        d = activation_math.gelu_derivative(v)
    elif ACTIVATION == "gelu_tanh":
        d = activation_math.gelu_tanh_derivative(v)
    else:
        tl.static_assert(ACTIVATION == "silu", "no derivative kernel for this ACTIVATION")
        d = activation_math.silu_derivative(v)
    return d


@triton.jit
def _widen(v, acc_t: tl.constexpr, INTERPRETER: tl.constexpr):
    """v in the compute type, exactly. bfloat16 moves its 16 bits into the top half of a float32, exact for every
    value: the cast is that on GPUs (compiled to multiplies and byte permutes, off the busy integer pipe), but
    Triton's interpreter flushes bfloat16 subnormals to zero in a cast, so under it the bits are moved by hand."""
    if (v.dtype == tl.bfloat16) & INTERPRETER:
        v = (v.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    return v.to(acc_t)


@triton.jit
def _load_widened(pointers, mask, acc_t: tl.constexpr, INTERPRETER: tl.constexpr):
    """Every load of a tensor goes through here: masked lanes read 0, values are widened exactly."""
    return _widen(tl.load(pointers, mask=mask, other=0.0), acc_t, INTERPRETER)


# Compile-time helpers of _round_to: the unsigned integer type of a bit width, and the spec's canonical NaN of a
# format of (total bits, mantissa bits).
_unsigned_type = triton.constexpr_function(tl.core.get_int_dtype)
_canonical_nan_bits = triton.constexpr_function(spec.canonical_nan_bits)


@triton.jit
def _round_to(v, dtype: tl.constexpr, INTERPRETER: tl.constexpr):
    """v (compute type) rounded once to `dtype`, to nearest even, a NaN written as the canonical NaN: GPUs and
    the interpreter's numpy disagree on NaN bits, and a GPU conversion makes 0x7FFF of any NaN, so the NaN is
    replaced after the rounding, on the output's bits. On GPUs the conversion is the hardware's cvt.rn (one
    instruction per two values). Triton's CPU interpreter truncates to bfloat16 instead, so under it (INTERPRETER,
    set by the launcher) bfloat16 is rounded with integer arithmetic that computes the same cvt.rn; the NaN
    replacement covers the NaNs that arithmetic would carry into the sign or exponent."""
    bits_type: tl.constexpr = _unsigned_type(dtype.primitive_bitwidth, signed=False)
    canonical_nan_bits: tl.constexpr = _canonical_nan_bits(dtype.primitive_bitwidth, dtype.fp_mantissa_width)
    if (dtype.primitive_bitwidth == 16) & (not INTERPRETER):
        # A GPU's cvt.rn to a 16-bit float writes every NaN as 0x7FFF, the largest int16 bit pattern. As int16,
        # the canonical NaN is below it and above every other pattern a conversion writes (negatives, and +inf at
        # 0x7C00 or 0x7F80): a minimum replaces the NaN and nothing else, one instruction and no NaN test.
        signed_type: tl.constexpr = _unsigned_type(16, signed=True)
        # v goes through an opaque move first: LLVM would otherwise move the selects that made v (the drop, relu)
        # past the conversion onto 16-bit halves, unpacking and repacking every pair around them (2-3 more
        # instructions per element). ptxas removes the move.
        v = tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [v], dtype=tl.float32, is_pure=True, pack=1)
        result_bits = v.to(dtype).to(signed_type, bitcast=True)
        result_bits = tl.minimum(result_bits, tl.full(result_bits.shape, canonical_nan_bits, signed_type))
    else:
        if dtype == tl.bfloat16:
            bits = v.to(tl.uint32, bitcast=True)
            rounded = bits + 0x7FFF + ((bits >> 16) & 1)
            result = (rounded >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        else:
            result = v.to(dtype)
        result_bits = result.to(bits_type, bitcast=True)
        result_bits = tl.where(v != v, tl.full(result_bits.shape, canonical_nan_bits, bits_type), result_bits)
    return result_bits.to(dtype, bitcast=True)


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
    """The program's tile: its row block, rows ([BR]), first column, columns ([BC // 4, 4]: column col0 + 4j + c at
    [j, c]), and the in-bounds mask and element index of each element ([BR, BC // 4, 4])."""
    pid = tl.program_id(0).to(tl.int64)
    if rows == 1:  # a flat view, where the launcher's rows = 1 is a constexpr: no division
        row_block = pid * 0
        col0 = pid * BC
    else:
        column_blocks = tl.cdiv(row_len, BC)
        row_block = pid // column_blocks
        col0 = (pid % column_blocks) * BC
    row = row_block * BR + tl.arange(0, BR).to(tl.int64)
    col = col0 + (tl.arange(0, BC // 4)[:, None] * 4 + tl.arange(0, 4)[None, :]).to(tl.int64)
    in_bounds = (row[:, None, None] < rows) & (col[None, :, :] < row_len)
    index = row[:, None, None] * row_len + col[None, :, :]  # int64: tensors over 2^31 elements are fine
    return row_block, row, col0, col, in_bounds, index


# threshold and scale_bits change with p: typed and not specialised on their values, so a new p never means a new
# compile. threshold = min(floor(p * 2^32), 2^32 - 1); scale_bits = the bits of the scale in the compute type, 0
# exactly when p = 1 (see _reads_input). The offset is typed too: offsets of every size share one compile, and so
# are the mask runs' extents and strides: geometries of every size share the compile of their RUN_COUNT.
_RUN_ARGUMENTS = [f"{part}_{r}" for r in range(MAX_KERNEL_RUNS) for part in ("extent", "stride")]


@triton.jit(do_not_specialize=["offset", "threshold", "scale_bits"] + _RUN_ARGUMENTS)
def forward_kernel(x_ptr, bias_ptr, residual_ptr, out_ptr, seed_ptr, offset: tl.int64, rows, row_len,
                   threshold: tl.uint32, scale_bits: tl.int64, ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr,
                   HAS_RESIDUAL: tl.constexpr, ACC_F64: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr,
                   INTERPRETER: tl.constexpr, RUN_COUNT: tl.constexpr = 0,
                   extent_0: tl.int64 = 1, stride_0: tl.int64 = 0, extent_1: tl.int64 = 1, stride_1: tl.int64 = 0,
                   extent_2: tl.int64 = 1, stride_2: tl.int64 = 0, extent_3: tl.int64 = 1, stride_3: tl.int64 = 0,
                   extent_4: tl.int64 = 1, stride_4: tl.int64 = 0, extent_5: tl.int64 = 1, stride_5: tl.int64 = 0):
    """out = [residual +] (keep ? ACTIVATION(x [+ bias]) * scale : 0), rounded once; keep from the mask under the
    geometry of the RUN_COUNT runs (none: the flat mask)."""
    acc_t = tl.float64 if ACC_F64 else tl.float32
    _, row, col0, col, in_bounds, index = _tile_coordinates(rows, row_len, BR, BC)
    seed = tl.load(seed_ptr)
    runs = (extent_0, stride_0, extent_1, stride_1, extent_2, stride_2, extent_3, stride_3, extent_4, stride_4,
            extent_5, stride_5)
    keep = _keep(seed, offset, runs, row, col0, rows, row_len, threshold, RUN_COUNT, BR, BC)
    reads_input = _reads_input(scale_bits)
    v = _load_widened(x_ptr + index, tl.where(reads_input, in_bounds, False), acc_t, INTERPRETER)
    if HAS_BIAS:
        bias = _load_widened(bias_ptr + col, tl.where(reads_input, col < row_len, False), acc_t, INTERPRETER)
        v = v + bias[None, :, :]
    out = _activate_and_drop(v, keep, _scale_value(scale_bits, ACC_F64), ACTIVATION)
    if HAS_RESIDUAL:
        out = _load_widened(residual_ptr + index, in_bounds, acc_t, INTERPRETER) + out
    tl.store(out_ptr + index, _round_to(out, out_ptr.dtype.element_ty, INTERPRETER), mask=in_bounds)


@triton.jit(do_not_specialize=["offset", "threshold", "scale_bits"] + _RUN_ARGUMENTS)
def backward_kernel(grad_ptr, y_ptr, x_ptr, bias_ptr, seed_ptr, offset: tl.int64, grad_in_ptr, partial_ptr, rows,
                    row_len, threshold: tl.uint32, scale_bits: tl.int64, KIND: tl.constexpr,
                    ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, BIAS_GRAD: tl.constexpr,
                    ACC_F64: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr, INTERPRETER: tl.constexpr,
                    RUN_COUNT: tl.constexpr = 0,
                    extent_0: tl.int64 = 1, stride_0: tl.int64 = 0, extent_1: tl.int64 = 1, stride_1: tl.int64 = 0,
                    extent_2: tl.int64 = 1, stride_2: tl.int64 = 0, extent_3: tl.int64 = 1, stride_3: tl.int64 = 0,
                    extent_4: tl.int64 = 1, stride_4: tl.int64 = 0, extent_5: tl.int64 = 1, stride_5: tl.int64 = 0):
    """grad_in = keep ? grad * scale : 0, keep from the mask (KIND "mask", under the geometry of the RUN_COUNT runs)
    or where the saved output y > 0 (KIND "relu_output"); KIND "input" (the smooth activations) keeps from the mask
    and multiplies by ACTIVATION'(x [+ bias]) from the saved input. With BIAS_GRAD, also this tile's column sums of
    grad_in (as stored) into partial[row_block, col], reduced later in row-block order."""
    acc_t = tl.float64 if ACC_F64 else tl.float32
    row_block, row, col0, col, in_bounds, index = _tile_coordinates(rows, row_len, BR, BC)
    if KIND == "relu_output":
        keep = _load_widened(y_ptr + index, in_bounds, acc_t, INTERPRETER) > 0
        grad = _load_widened(grad_ptr + index, in_bounds, acc_t, INTERPRETER)
        grad_in = tl.where(keep, grad * _scale_value(scale_bits, ACC_F64), 0.0)
    else:
        tl.static_assert((KIND == "mask") | (KIND == "input"), "unknown backward KIND")
        seed = tl.load(seed_ptr)
        runs = (extent_0, stride_0, extent_1, stride_1, extent_2, stride_2, extent_3, stride_3, extent_4, stride_4,
                extent_5, stride_5)
        keep = _keep(seed, offset, runs, row, col0, rows, row_len, threshold, RUN_COUNT, BR, BC)
        reads = tl.where(_reads_input(scale_bits), in_bounds, False)
        grad = _load_widened(grad_ptr + index, reads, acc_t, INTERPRETER)
        scaled = grad * _scale_value(scale_bits, ACC_F64)
        if KIND == "input":
            # At p = 1 x and bias read 0 like grad: a kept 0xFFFFFFFF word then gives 0 * 0 * derivative(0) = +0.
            v = _load_widened(x_ptr + index, reads, acc_t, INTERPRETER)
            if HAS_BIAS:
                v = v + _load_widened(bias_ptr + col, tl.where(_reads_input(scale_bits), col < row_len, False),
                                      acc_t, INTERPRETER)[None, :, :]
            scaled = scaled * _derivative(v, ACTIVATION)
        grad_in = tl.where(keep, scaled, 0.0)
    grad_in = _round_to(grad_in, grad_in_ptr.dtype.element_ty, INTERPRETER)
    tl.store(grad_in_ptr + index, grad_in, mask=in_bounds)
    if BIAS_GRAD:
        column_sum = tl.sum(tl.where(in_bounds, _widen(grad_in, acc_t, INTERPRETER), 0.0), axis=0)
        tl.store(partial_ptr + row_block * row_len + col, column_sum, mask=col < row_len)


@triton.jit
def column_sum_kernel(partial_ptr, out_ptr, row_blocks, row_len, BC: tl.constexpr, ACC_F64: tl.constexpr,
                      INTERPRETER: tl.constexpr):
    """out[c] = sum of partial[b, c] over b = 0, 1, ... in that order: deterministic, no atomics."""
    col = tl.program_id(0).to(tl.int64) * BC + tl.arange(0, BC).to(tl.int64)
    in_bounds = col < row_len
    total = tl.zeros((BC,), dtype=tl.float64 if ACC_F64 else tl.float32)
    for block in range(0, row_blocks):
        total += tl.load(partial_ptr + block * row_len + col, mask=in_bounds, other=0.0)
    tl.store(out_ptr + col, _round_to(total, out_ptr.dtype.element_ty, INTERPRETER), mask=in_bounds)
