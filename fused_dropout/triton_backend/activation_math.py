"""gelu, gelu_tanh and silu, their derivatives and second derivatives, as @triton.jit functions of a float32 or
float64 tensor: csrc/activation_math.h's algorithm (which explains it) operation for operation, with the constants
of fused_dropout/activations.py, so every backend gives the same bits (tests/test_activation_math.py checks them
in the interpreter and compiles them for sm_90).

Multiplies, adds, subtracts and divides only, each rounded once: kernels that call these must be compiled with
enable_fp_fusion=False (launch.COMPILE_OPTIONS), so no multiply and add are contracted into an FMA, and float32
divisions are tl.math.div_rn (IEEE), not the approximate division `/` compiles to for float32.

The constants of a type are one constexpr tuple, read by field index (`c[LOG2E]`): the interpreter's constexpr has
no attribute access.
"""
import torch
import triton
import triton.language as tl

from ..activations import MATH_CONSTANTS, MathConstants

# The constants as constexpr tuples (the integer dtype's name in place of the torch dtype), and each field's index.
_FLOAT32 = tl.constexpr(tuple(str(v) if isinstance(v, torch.dtype) else v for v in MATH_CONSTANTS[torch.float32]))
_FLOAT64 = tl.constexpr(tuple(str(v) if isinstance(v, torch.dtype) else v for v in MATH_CONSTANTS[torch.float64]))
MANTISSA_BITS = tl.constexpr(MathConstants._fields.index("mantissa_bits"))
EXP_MIN = tl.constexpr(MathConstants._fields.index("exp_min"))
EXP_MAX = tl.constexpr(MathConstants._fields.index("exp_max"))
GELU_EXP_MIN = tl.constexpr(MathConstants._fields.index("gelu_exp_min"))
MAGIC = tl.constexpr(MathConstants._fields.index("magic"))
MAGIC_BITS = tl.constexpr(MathConstants._fields.index("magic_bits"))
LOG2E = tl.constexpr(MathConstants._fields.index("log2e"))
LN2_HI = tl.constexpr(MathConstants._fields.index("ln2_hi"))
LN2_LO = tl.constexpr(MathConstants._fields.index("ln2_lo"))
EXPONENT_BIAS = tl.constexpr(MathConstants._fields.index("exponent_bias"))
PRESCALE = tl.constexpr(MathConstants._fields.index("prescale"))
PRESCALE_BACK = tl.constexpr(MathConstants._fields.index("prescale_back"))
EXP_POLY = tl.constexpr(MathConstants._fields.index("exp_poly"))
SPLIT_MASK_GELU = tl.constexpr(MathConstants._fields.index("split_mask_gelu"))
GELU_Y_MAX = tl.constexpr(MathConstants._fields.index("gelu_y_max"))
GELU_TAIL_NUMERATOR = tl.constexpr(MathConstants._fields.index("gelu_tail_numerator"))
GELU_TAIL_DENOMINATOR = tl.constexpr(MathConstants._fields.index("gelu_tail_denominator"))
GELU_TAIL_SPLIT = tl.constexpr(MathConstants._fields.index("gelu_tail_split"))
GELU_TAIL_CENTER = tl.constexpr(MathConstants._fields.index("gelu_tail_center"))
GELU_TAIL_Q0 = tl.constexpr(MathConstants._fields.index("gelu_tail_q0"))
GELU_TAIL_NEAR_POLY = tl.constexpr(MathConstants._fields.index("gelu_tail_near_poly"))
GELU_TAIL_FAR_SHIFT = tl.constexpr(MathConstants._fields.index("gelu_tail_far_shift"))
GELU_TAIL_FAR_POLY = tl.constexpr(MathConstants._fields.index("gelu_tail_far_poly"))
GELU_CENTER_END = tl.constexpr(MathConstants._fields.index("gelu_center_end"))
GELU_CENTER_POLY = tl.constexpr(MathConstants._fields.index("gelu_center_poly"))
INV_SQRT_2PI = tl.constexpr(MathConstants._fields.index("inv_sqrt_2pi"))
TANH_X_MAX = tl.constexpr(MathConstants._fields.index("tanh_x_max"))
SPLIT_MASK_X = tl.constexpr(MathConstants._fields.index("split_mask_x"))
SPLIT_MASK_W = tl.constexpr(MathConstants._fields.index("split_mask_w"))
C1_HI = tl.constexpr(MathConstants._fields.index("c1_hi"))
C1_LO = tl.constexpr(MathConstants._fields.index("c1_lo"))
C3_HI = tl.constexpr(MathConstants._fields.index("c3_hi"))
C3_LO = tl.constexpr(MathConstants._fields.index("c3_lo"))
C3 = tl.constexpr(MathConstants._fields.index("c3"))


@triton.jit
def _constants(x):
    if x.dtype == tl.float64:
        c: tl.constexpr = _FLOAT64
    else:
        tl.static_assert(x.dtype == tl.float32, "activations compute in float32 or float64")
        c: tl.constexpr = _FLOAT32
    return c


@triton.jit
def _int_type(x):
    if x.dtype == tl.float64:
        t: tl.constexpr = tl.int64
    else:
        t: tl.constexpr = tl.int32
    return t


@triton.jit
def _div(a, b):
    """a / b rounded once (IEEE) in either type."""
    if a.dtype == tl.float32:
        q = tl.math.div_rn(a, b)
    else:
        q = a / b
    return q


@triton.jit
def _reciprocal(d):
    """1 / d rounded once (IEEE) in either type."""
    if d.dtype == tl.float32:
        q = tl.math.div_rn(1.0, d)
    else:
        q = 1.0 / d
    return q


@triton.jit
def _horner(r, C: tl.constexpr, N: tl.constexpr):
    """C[0] + r (C[1] + r (C[2] + ...)), N coefficients."""
    q = r * C[N - 1] + C[N - 2]
    for i in tl.static_range(N - 2):
        q = q * r + C[N - 3 - i]
    return q


@triton.jit
def _split(v, mask):
    """v with its low mantissa bits cleared: few enough bits are left that products of such parts are exact."""
    int_type: tl.constexpr = _int_type(v)
    return (v.to(int_type, bitcast=True) & mask).to(v.dtype, bitcast=True)


@triton.jit
def _power_of_two(exponent, like):
    """2^exponent (an integer tensor in the normal range), in like's type."""
    c: tl.constexpr = _constants(like)
    return ((exponent + c[EXPONENT_BIAS]) << c[MANTISSA_BITS]).to(like.dtype, bitcast=True)


@triton.jit
def _clamp(x, bound):
    """x in [-bound, bound], NaN kept: the derivatives take their limits beyond."""
    return tl.where(x > bound, bound, tl.where(x < -bound, -bound, x))


# ---- exp ---------------------------------------------------------------------------------------------------


@triton.jit
def _reduce(hi, lo, lower, upper, HAS_LO: tl.constexpr):
    """exp(hi + lo) = 2^k (1 + m): (m, k). hi is clamped to [lower, upper]; lo joins the reduced argument."""
    c: tl.constexpr = _constants(hi)
    int_type: tl.constexpr = _int_type(hi)
    hi = tl.where(hi < lower, lower, hi)
    hi = tl.where(hi > upper, upper, hi)
    if HAS_LO:
        k_magic = (hi + lo) * c[LOG2E] + c[MAGIC]
    else:
        k_magic = hi * c[LOG2E] + c[MAGIC]
    k = k_magic - c[MAGIC]
    r = hi - k * c[LN2_HI]
    if HAS_LO:
        r = r + lo
    r = r - k * c[LN2_LO]
    m = r + (r * r) * _horner(r, c[EXP_POLY], len(c[EXP_POLY]))
    return m, k_magic.to(int_type, bitcast=True) - c[MAGIC_BITS]


@triton.jit
def _exp_value(m, k):
    """(1 + m) 2^k for k <= 0, the one rounding below the normal range in the last multiply."""
    c: tl.constexpr = _constants(m)
    return ((1 + m) * _power_of_two(k + c[PRESCALE], m)) * c[PRESCALE_BACK]


# ---- sigmoid -------------------------------------------------------------------------------------------------


@triton.jit
def _denominator(m, k):
    """(P, scaled, (1 + exp(-z)) P = (P + S) + S m): P = 1 when k <= 0, 2^-prescale when k > 0; S = 2^k P (rounded
    below the normal range); scaled = S, or 2^prescale S when k <= 0."""
    c: tl.constexpr = _constants(m)
    positive = k > 0
    p = tl.where(positive, c[PRESCALE_BACK], 1.0).to(m.dtype)
    scaled = _power_of_two(tl.where(positive, k - c[PRESCALE], k + c[PRESCALE]), m)
    s = tl.where(positive, scaled, scaled * c[PRESCALE_BACK])
    sm = s * m
    # (P + S) + S m while P + S is exact; past 2^mantissa_bits, S m joins P first (P + S would round).
    beyond = k > c[MANTISSA_BITS]
    return p, scaled, (p + tl.where(beyond, sm, s)) + tl.where(beyond, s, sm)


@triton.jit
def _times_sigmoid(x, m, k):
    """x sigmoid(z) = (x P) / ((1 + exp(-z)) P), x raised to -exp_max (where the value rounds to 0)."""
    c: tl.constexpr = _constants(m)
    p, scaled, d = _denominator(m, k)
    x = tl.where(x < -c[EXP_MAX], -c[EXP_MAX], x)
    return _div(x * p, d)


@triton.jit
def _sigmoid_pair(m, k):
    """(sigmoid(z), 1 - sigmoid(z)) = (P, S + S m) / ((1 + exp(-z)) P), neither by cancellation; 1 - sigmoid is made
    at 2^prescale times its size when k <= 0 and scaled back last."""
    c: tl.constexpr = _constants(m)
    p, scaled, d = _denominator(m, k)
    reciprocal = _reciprocal(d)
    back = tl.where(k > 0, 1.0, c[PRESCALE_BACK]).to(m.dtype)
    return p * reciprocal, ((scaled + scaled * m) * reciprocal) * back


# ---- silu ----------------------------------------------------------------------------------------------------


@triton.jit
def _silu_reduce(x):
    c: tl.constexpr = _constants(x)
    return _reduce(-x, x, c[EXP_MIN], c[EXP_MAX], False)


@triton.jit
def silu(x):
    m, k = _silu_reduce(x)
    return _times_sigmoid(x, m, k)


@triton.jit
def silu_derivative(x):
    """s (1 + x (1 - s))"""
    c: tl.constexpr = _constants(x)
    x = _clamp(x, c[EXP_MAX])
    m, k = _silu_reduce(x)
    s, sc = _sigmoid_pair(m, k)
    return s * (1 + x * sc)


@triton.jit
def silu_second_derivative(x):
    """s (1 - s) (2 + x (1 - 2s))"""
    c: tl.constexpr = _constants(x)
    x = _clamp(x, c[EXP_MAX])
    m, k = _silu_reduce(x)
    s, sc = _sigmoid_pair(m, k)
    return (s * sc) * (2 + x * (sc - s))


# ---- gelu_tanh -----------------------------------------------------------------------------------------------


@triton.jit
def _tanh_reduce(x):
    """exp(-z), z = 2u = x (C1 + C3 x^2) in two words, |x| lowered to tanh_x_max."""
    c: tl.constexpr = _constants(x)
    x = _clamp(x, c[TANH_X_MAX])
    x_hi = _split(x, c[SPLIT_MASK_X])
    x_lo = x - x_hi
    square_hi = x_hi * x_hi
    square_lo = x_lo * (x + x_hi)
    cubic_hi = c[C3_HI] * square_hi
    cubic_lo = c[C3_LO] * square_hi + c[C3] * square_lo
    w = c[C1_HI] + cubic_hi
    b = w - c[C1_HI]
    w_lo = (c[C1_HI] - (w - b)) + (cubic_hi - b)
    w_lo = (w_lo + cubic_lo) + c[C1_LO]
    w_hi = _split(w, c[SPLIT_MASK_W])
    z_hi = x_hi * w_hi
    z_lo = (x_hi * (w - w_hi) + x_lo * w) + x * w_lo
    return _reduce(-z_hi, -z_lo, c[EXP_MIN], c[EXP_MAX], True)


@triton.jit
def _tanh_slope(x):
    """dz/dx = C1 + 3 C3 x^2"""
    c: tl.constexpr = _constants(x)
    return c[C1_HI] + (3 * c[C3]) * (x * x)


@triton.jit
def gelu_tanh(x):
    m, k = _tanh_reduce(x)
    return _times_sigmoid(x, m, k)


@triton.jit
def gelu_tanh_derivative(x):
    """s (1 + x (1 - s) z')"""
    c: tl.constexpr = _constants(x)
    x = _clamp(x, c[TANH_X_MAX])
    m, k = _tanh_reduce(x)
    s, sc = _sigmoid_pair(m, k)
    return s * (1 + (x * sc) * _tanh_slope(x))


@triton.jit
def gelu_tanh_second_derivative(x):
    """s (1 - s) (2 z' + x (1 - 2s) z'^2 + 6 C3 x^2)"""
    c: tl.constexpr = _constants(x)
    x = _clamp(x, c[TANH_X_MAX])
    m, k = _tanh_reduce(x)
    s, sc = _sigmoid_pair(m, k)
    slope = _tanh_slope(x)
    inner = (2 * slope + (x * (sc - s)) * (slope * slope)) + (6 * c[C3]) * (x * x)
    return (s * sc) * inner


# ---- gelu ----------------------------------------------------------------------------------------------------


@triton.jit
def _gelu_reduce(x):
    """exp(-x^2 / 2), |x| lowered to gelu_y_max (where it rounds to 0)."""
    c: tl.constexpr = _constants(x)
    y = tl.abs(x)
    y = tl.where(y > c[GELU_Y_MAX], c[GELU_Y_MAX], y)
    y_hi = _split(y, c[SPLIT_MASK_GELU])
    y_lo = y - y_hi
    return _reduce((y_hi * y_hi) * -0.5, (y_lo * (y + y_hi)) * -0.5, c[GELU_EXP_MIN], 0.0, True)


@triton.jit
def _gelu_tail_ratio(x):
    """Phi(-y) / exp(-y^2 / 2) = N(y) / M(y), y = |x| (for the derivatives)."""
    c: tl.constexpr = _constants(x)
    y = tl.abs(x)
    y = tl.where(y > c[GELU_Y_MAX], c[GELU_Y_MAX], y)
    numerator = _horner(y, c[GELU_TAIL_NUMERATOR], len(c[GELU_TAIL_NUMERATOR]))
    return _div(numerator, _horner(y, c[GELU_TAIL_DENOMINATOR], len(c[GELU_TAIL_DENOMINATOR])))


@triton.jit
def _gelu_tail(x):
    """y Phi(-y) / exp(-y^2 / 2) = q0 + delta, y = |x| lowered to gelu_y_max: (q0, delta)."""
    c: tl.constexpr = _constants(x)
    y = tl.abs(x)
    y = tl.where(y > c[GELU_Y_MAX], c[GELU_Y_MAX], y)
    if x.dtype == tl.float64:  # one piece
        numerator = y * _horner(y, c[GELU_TAIL_NUMERATOR], len(c[GELU_TAIL_NUMERATOR]))
        q0 = tl.zeros_like(y)
        delta = _div(numerator, _horner(y, c[GELU_TAIL_DENOMINATOR], len(c[GELU_TAIL_DENOMINATOR])))
    else:
        near = _horner(y - c[GELU_TAIL_CENTER], c[GELU_TAIL_NEAR_POLY], len(c[GELU_TAIL_NEAR_POLY]))
        far = _horner(_reciprocal(y * y + c[GELU_TAIL_FAR_SHIFT]), c[GELU_TAIL_FAR_POLY], len(c[GELU_TAIL_FAR_POLY]))
        q0 = tl.full(y.shape, c[GELU_TAIL_Q0], x.dtype)
        delta = tl.where(y < c[GELU_TAIL_SPLIT], near, far)
    return q0, delta


@triton.jit
def _gelu_tail_value(q0, delta, m, k):
    """y Phi(-y) = 2^k q0 + 2^k (delta + (q0 + delta) m): 2^k q0 exact, the rest small (one rounding of note)."""
    c: tl.constexpr = _constants(m)
    scale = _power_of_two(k + c[PRESCALE], m)
    rest = delta + (q0 + delta) * m
    return (q0 * scale + rest * scale) * c[PRESCALE_BACK]


@triton.jit
def _gelu_center(x):
    """Phi(x) - 1/2 = x C(x^2), |x| < gelu_center_end."""
    c: tl.constexpr = _constants(x)
    return x * _horner(x * x, c[GELU_CENTER_POLY], len(c[GELU_CENTER_POLY]))


@triton.jit
def _phi(x, m, k):
    c: tl.constexpr = _constants(x)
    tail = _exp_value(m, k) * _gelu_tail_ratio(x)
    return tl.where(tl.abs(x) < c[GELU_CENTER_END], 0.5 + _gelu_center(x), tl.where(x < 0, tail, 1 - tail))


@triton.jit
def gelu(x):
    c: tl.constexpr = _constants(x)
    center = x * (0.5 + _gelu_center(x))
    m, k = _gelu_reduce(x)
    q0, delta = _gelu_tail(x)
    tail = _gelu_tail_value(q0, delta, m, k)  # |x| Phi(-|x|)
    return tl.where(tl.abs(x) < c[GELU_CENTER_END], center, tl.where(x < 0, -tail, x - tail))


@triton.jit
def gelu_derivative(x):
    """Phi(x) + x phi(x)"""
    c: tl.constexpr = _constants(x)
    x = _clamp(x, c[GELU_Y_MAX])
    m, k = _gelu_reduce(x)
    return _phi(x, m, k) + x * (_exp_value(m, k) * c[INV_SQRT_2PI])


@triton.jit
def gelu_second_derivative(x):
    """phi(x) (2 - x^2)"""
    c: tl.constexpr = _constants(x)
    x = _clamp(x, c[GELU_Y_MAX])
    m, k = _gelu_reduce(x)
    return (_exp_value(m, k) * c[INV_SQRT_2PI]) * (2 - x * x)


@triton.jit
def activation(x, ACTIVATION: tl.constexpr, ORDER: tl.constexpr):
    """ACTIVATION's value (ORDER 0), derivative (1) or second derivative (2) at x: the dispatch the kernels use."""
    if ACTIVATION == "gelu":
        if ORDER == 0:
            out = gelu(x)
        elif ORDER == 1:
            out = gelu_derivative(x)
        else:
            out = gelu_second_derivative(x)
    elif ACTIVATION == "gelu_tanh":
        if ORDER == 0:
            out = gelu_tanh(x)
        elif ORDER == 1:
            out = gelu_tanh_derivative(x)
        else:
            out = gelu_tanh_second_derivative(x)
    else:
        tl.static_assert(ACTIVATION == "silu", "activation_math has gelu, gelu_tanh and silu")
        if ORDER == 0:
            out = silu(x)
        elif ORDER == 1:
            out = silu_derivative(x)
        else:
            out = silu_second_derivative(x)
    return out
