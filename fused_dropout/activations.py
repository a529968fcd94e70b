"""The activations of the fused ops, in Python: the one place the reference backend and the eager compositions
take them from. Each has the value, its derivative (what a backward that recomputes the activation needs) and its
second derivative (what a double backward needs).

gelu, gelu_tanh and silu are computed by the algorithm of csrc/activation_math.h (which explains it), written
here with torch ops in the same order: multiplies, adds and divides only, each rounded once (no library exp, erf
or tanh, whose rounding differs between devices), so the values are bit-identical to the C++ and Triton ones
(tests/test_activation_math.py checks it) in float32 and float64. The coefficient tables below are shared with the
Triton functions (fused_dropout/triton_backend/activation_math.py); csrc/activation_math.h has the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]  # d forward / d v, in v's dtype
    second_derivative: Callable[[torch.Tensor], torch.Tensor]  # d^2 forward / d v^2, in v's dtype


class MathConstants(NamedTuple):
    """The constants of the activation math for one compute type; see csrc/activation_math.h for each one's role.
    float32 values are written as their exact float32 values (so no literal rounds twice anywhere)."""

    int_dtype: torch.dtype
    mantissa_bits: int  # stored mantissa bits: 23 / 52
    # exp(hi + lo) = 2^k (1 + m)
    # the sigmoids' exp(-z): its argument is raised to exp_min (1 - sigmoid rounds to 0 there) and lowered to
    # exp_max (x * exp(-exp_max) rounds to 0 for every x); 2^(k +- prescale) stays normal, lo included
    exp_min: float
    exp_max: float
    gelu_exp_min: float  # gelu's exp(-x^2 / 2) is raised to exp(gelu_exp_min), which rounds to 0
    magic: float  # 1.5 * 2^mantissa_bits: adding it rounds to an integer, held in the low bits
    magic_bits: int
    log2e: float
    ln2_hi: float  # few bits, so k * ln2_hi is exact
    ln2_lo: float
    exponent_bias: int
    prescale: int  # results below the normal range are made at 2^prescale times their size, then scaled back
    prescale_back: float  # 2^-prescale
    exp_poly: tuple  # e^r = 1 + r + r^2 * P(r), |r| <= ln2 / 2; P's coefficients, lowest degree first
    # gelu: Phi(x) = 1/2 + x C(x^2) for |x| < gelu_center_end; beyond, y = |x|, y Phi(-y) = exp(-y^2 / 2) (q0 + delta)
    split_mask_gelu: int  # keeps the top bits of y whose square is exact
    gelu_y_max: float  # y is lowered to this: exp(-y_max^2 / 2) rounds to 0
    # Phi(-y) / exp(-y^2 / 2) = N(y) / M(y) (the derivatives; float64's forward too: q0 = 0, delta = y N(y) / M(y))
    gelu_tail_numerator: tuple  # N's coefficients, lowest degree first (all positive: no cancellation)
    gelu_tail_denominator: tuple  # M's
    # float32: delta in two pieces, a polynomial of y - center below split, one of 1 / (y^2 + far_shift) from there
    # (float64: None)
    gelu_tail_split: float  # the near piece below, the far piece from here
    gelu_tail_center: float  # near piece: v = y - center (exact)
    gelu_tail_q0: float  # both pieces' q0: y Phi(-y) / exp(-y^2 / 2) at y = center, rounded
    gelu_tail_near_poly: tuple  # delta's coefficients, lowest degree first
    gelu_tail_far_shift: float  # far piece: v = 1 / (y^2 + far_shift) (Q feels its rounding 0.22 times at most)
    gelu_tail_far_poly: tuple
    gelu_center_end: float
    gelu_center_poly: tuple  # Phi(x) - 1/2 = x * C(x^2) for |x| < gelu_center_end: C's coefficients
    inv_sqrt_2pi: float
    # gelu_tanh: z = 2u = x * (C1 + C3 * x^2) in two words
    tanh_x_max: float  # |x| is lowered to this in z: sigmoid(z) is 0 or 1 there
    split_mask_x: int  # x's top bits (m), so x_hi^2 and C3_HI * x_hi^2 are exact
    split_mask_w: int  # w's top bits, so x_hi * w_hi is exact
    c1_hi: float
    c1_lo: float
    c3_hi: float  # C3 rounded to few bits
    c3_lo: float
    c3: float


_FLOAT32 = MathConstants(
    int_dtype=torch.int32,
    mantissa_bits=23,
    exp_min=-110.0,
    exp_max=110.0,
    gelu_exp_min=-110.0,
    magic=12582912.0,
    magic_bits=0x4B400000,
    log2e=1.4426950216293335,
    ln2_hi=0.693359375,
    ln2_lo=-0.00021219444170128554,
    exponent_bias=127,
    prescale=64,
    prescale_back=2.0**-64,
    exp_poly=(0.49999988079071045, 0.166665181517601, 0.041669659316539764, 0.008368968032300472, 0.0013744543539360166),
    split_mask_gelu=-(1 << 12),
    gelu_y_max=16.0,
    gelu_tail_numerator=(0.49999961256980896, 0.5367918610572815, 0.2784487009048462, 0.08387240767478943, 0.014694158919155598,
        0.0012531443499028683),
    gelu_tail_denominator=(1.0, 1.871462345123291, 1.5501292943954468, 0.7347532510757446, 0.21338044106960297, 0.03683272376656532,
        0.003141168039292097),
    gelu_tail_split=2.0,
    gelu_tail_center=1.375,
    gelu_tail_q0=0.29925474524497986,
    gelu_tail_near_poly=(1.188748566249842e-08, 0.08056946098804474, -0.04429596662521362, 0.019983069971203804,
        -0.007896998897194862, 0.002817891538143158, -0.0009286471758969128, 0.0003086742071900517,
        -9.159733599517494e-05),
    gelu_tail_far_shift=3.0,
    gelu_tail_far_poly=(0.09968750178813934, -0.3989306092262268, -0.0013561483938246965, -2.317373514175415,
        7.07512903213501, -46.18175506591797, 139.5160369873047, -287.5244140625),
    gelu_center_end=0.75,
    gelu_center_poly=(0.3989422917366028, -0.06649058312177658, 0.009974176995456219, -0.001185589819215238, 0.00010632482008077204),
    inv_sqrt_2pi=0.3989422917366028,
    tanh_x_max=12.0,
    split_mask_x=-(1 << 16),
    split_mask_w=-(1 << 8),
    c1_hi=1.5957691669464111,
    c1_lo=-4.534068054340423e-08,
    c3_hi=0.0712890625,
    c3_lo=6.575377483386546e-05,
    c3=0.07135481387376785,
)

_FLOAT64 = MathConstants(
    int_dtype=torch.int64,
    mantissa_bits=52,
    exp_min=-760.0,
    exp_max=760.0,
    gelu_exp_min=-760.0,
    magic=6755399441055744.0,
    magic_bits=0x4338000000000000,
    log2e=1.4426950408889634,
    ln2_hi=0.6931471803691238,
    ln2_lo=1.9082149292705877e-10,
    exponent_bias=1023,
    prescale=128,
    prescale_back=2.0**-128,
    exp_poly=(0.5000000000000013, 0.16666666666666488, 0.04166666666651182, 0.008333333333447287, 0.001388888894779552,
        0.00019841269607173592, 2.4801489225511812e-05, 2.7557497365797654e-06, 2.7631518290783527e-07,
        2.5028076338831574e-08),
    split_mask_gelu=-(1 << 27),
    gelu_y_max=40.0,
    gelu_tail_numerator=(0.5000000000016525, 0.8598820143556222, 0.7312847341627936, 0.39856226490667407, 0.15295211177312182,
        0.04304020368039161, 0.008992868628351983, 0.0013815055239908482, 0.00015025440320516807,
        1.0562448829621515e-05, 3.7231593766507007e-07),
    gelu_tail_denominator=(1.0, 2.5176485895521834, 2.9713624072487956, 2.175065945314418, 1.1002722010334212, 0.4051919333484476,
        0.1112957601113566, 0.022916544191867894, 0.0034893969409236125, 0.00037756519311772034,
        2.64761328856776e-05, 9.332576564469973e-07),
    gelu_tail_split=None,
    gelu_tail_center=None,
    gelu_tail_q0=None,
    gelu_tail_near_poly=None,
    gelu_tail_far_shift=None,
    gelu_tail_far_poly=None,
    gelu_center_end=0.75,
    gelu_center_poly=(0.39894228040143265, -0.06649038006690196, 0.009973557009920786, -0.001187328213773462,
        0.00011543467398803377, -9.444592621269225e-06, 6.657900928488273e-07, -4.092618668383904e-08,
        1.995580581535199e-09),
    inv_sqrt_2pi=0.3989422804014327,
    tanh_x_max=30.0,
    split_mask_x=-(1 << 36),
    split_mask_w=-(1 << 17),
    c1_hi=1.5957691216057308,
    c1_lo=-9.96930880911092e-17,
    c3_hi=0.07135486602783203,
    c3_lo=-4.975523178247366e-08,
    c3=0.07135481627260025,
)

MATH_CONSTANTS = {torch.float32: _FLOAT32, torch.float64: _FLOAT64}
MATH_DTYPE = {torch.int32: torch.float32, torch.int64: torch.float64}


def _constants(v: torch.Tensor) -> MathConstants:
    if v.dtype not in MATH_CONSTANTS:
        raise TypeError(f"activations are computed in float32 or float64, not {v.dtype}")
    return MATH_CONSTANTS[v.dtype]


def _split(v: torch.Tensor, mask: int, c: MathConstants) -> torch.Tensor:
    """v with its low mantissa bits cleared: few enough bits left that products of such parts are exact."""
    return (v.view(c.int_dtype) & mask).view(v.dtype)


def _horner(coefficients: tuple, r: torch.Tensor) -> torch.Tensor:
    q = torch.full_like(r, coefficients[-1])
    for coefficient in reversed(coefficients[:-1]):
        q = q * r + coefficient
    return q


def _reduce(hi: torch.Tensor, lo, lower: float, upper: float, c: MathConstants):
    """exp(hi + lo) = 2^k * (1 + m): (m, k as an integer tensor). hi is clamped to [lower, upper] (NaN stays NaN);
    lo (None, or a tensor below 2 in size) joins the reduced argument, so it is not rounded into hi."""
    hi = torch.where(hi < lower, lower, hi)
    hi = torch.where(hi > upper, upper, hi)
    k_magic = (hi if lo is None else hi + lo) * c.log2e + c.magic
    k = k_magic - c.magic
    r = hi - k * c.ln2_hi
    if lo is not None:
        r = r + lo
    r = r - k * c.ln2_lo
    m = r + (r * r) * _horner(c.exp_poly, r)
    return m, k_magic.view(c.int_dtype) - c.magic_bits


def _power_of_two(exponent: torch.Tensor, c: MathConstants) -> torch.Tensor:
    """2^exponent for an integer tensor in the normal range, built from its bits."""
    return ((exponent + c.exponent_bias) << c.mantissa_bits).view(MATH_DTYPE[c.int_dtype])


def _exp_value(m: torch.Tensor, k: torch.Tensor, c: MathConstants) -> torch.Tensor:
    """(1 + m) * 2^k for k <= 0: scaled up first, so the one rounding below the normal range is the last multiply."""
    return ((1 + m) * _power_of_two(k + c.prescale, c)) * c.prescale_back


# ---- sigmoid: x * sigmoid(z) = x / (1 + exp(-z)), and the pair sigmoid(z), 1 - sigmoid(z) -----------------------


class _Denominator(NamedTuple):
    """1 + exp(-z) = 1 + 2^k (1 + m), times P: P = 1 when k <= 0, P = prescale_back when k > 0 (exp(-z) up to
    2^(exp_max / ln 2) stays finite). S = 2^k P (rounded below the normal range), value = (P + S) + S m (past 2^mantissa_bits: (P + S m) + S): P + S is
    exact while k >= -mantissa_bits (and below, S m is negligible), so the denominator is rounded once of note.
    scaled = S, or 2^prescale S when k <= 0 (normal down to exp_min): 1 - sigmoid is made from it."""

    p: torch.Tensor
    scaled: torch.Tensor
    value: torch.Tensor


def _denominator(m: torch.Tensor, k: torch.Tensor, c: MathConstants) -> _Denominator:
    positive = k > 0
    p = torch.where(positive, c.prescale_back, 1.0).to(m.dtype)
    scaled = _power_of_two(torch.where(positive, k - c.prescale, k + c.prescale), c)
    s = torch.where(positive, scaled, scaled * c.prescale_back)
    sm = s * m
    # (P + S) + S m while P + S is exact; past 2^mantissa_bits, S m joins P first (P + S would round).
    beyond = k > c.mantissa_bits
    return _Denominator(p, scaled, (p + torch.where(beyond, sm, s)) + torch.where(beyond, s, sm))


def _times_sigmoid(x: torch.Tensor, m: torch.Tensor, k: torch.Tensor, c: MathConstants) -> torch.Tensor:
    """x * sigmoid(z) = (x P) / ((1 + exp(-z)) P), x raised to -exp_max (where the value rounds to 0)."""
    d = _denominator(m, k, c)
    x = torch.where(x < -c.exp_max, -c.exp_max, x)
    return (x * d.p) / d.value


def _sigmoid_pair(m: torch.Tensor, k: torch.Tensor, c: MathConstants):
    """(sigmoid(z), 1 - sigmoid(z)) = (P, S + S m) / ((1 + exp(-z)) P), neither by cancellation; 1 - sigmoid is
    made at 2^prescale times its size when k <= 0 and scaled back last (one rounding below the normal range)."""
    d = _denominator(m, k, c)
    reciprocal = 1 / d.value
    complement = ((d.scaled + d.scaled * m) * reciprocal) * torch.where(k > 0, 1.0, c.prescale_back).to(m.dtype)
    return d.p * reciprocal, complement


# ---- silu: x * sigmoid(x) ------------------------------------------------------------------------------------


def silu(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    return _times_sigmoid(x, *_reduce(-x, None, c.exp_min, c.exp_max, c), c)


def _clamp(x: torch.Tensor, bound: float) -> torch.Tensor:
    """x in [-bound, bound] (NaN stays NaN): the derivatives take their limits beyond (1 or 0 at +inf, 0 at -inf)."""
    return torch.where(x > bound, bound, torch.where(x < -bound, -bound, x))


def silu_derivative(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    x = _clamp(x, c.exp_max)
    s, sc = _sigmoid_pair(*_reduce(-x, None, c.exp_min, c.exp_max, c), c)
    return s * (1 + x * sc)


def silu_second_derivative(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    x = _clamp(x, c.exp_max)
    s, sc = _sigmoid_pair(*_reduce(-x, None, c.exp_min, c.exp_max, c), c)
    return (s * sc) * (2 + x * (sc - s))


# ---- gelu_tanh: x * sigmoid(2u), u = sqrt(2 / pi) * (x + 0.044715 x^3) ----------------------------------------


def _tanh_argument(x: torch.Tensor, c: MathConstants):
    """z = 2u as z_hi + z_lo (z_hi an exact product, z_lo the rest), |x| lowered to tanh_x_max."""
    x = _clamp(x, c.tanh_x_max)
    x_hi = _split(x, c.split_mask_x, c)
    x_lo = x - x_hi
    square_hi = x_hi * x_hi
    square_lo = x_lo * (x + x_hi)
    cubic_hi = c.c3_hi * square_hi
    cubic_lo = c.c3_lo * square_hi + c.c3 * square_lo
    w = c.c1_hi + cubic_hi
    b = w - c.c1_hi
    w_lo = (c.c1_hi - (w - b)) + (cubic_hi - b)
    w_lo = (w_lo + cubic_lo) + c.c1_lo
    w_hi = _split(w, c.split_mask_w, c)
    z_hi = x_hi * w_hi
    z_lo = (x_hi * (w - w_hi) + x_lo * w) + x * w_lo
    return z_hi, z_lo


def _tanh_reduce(x: torch.Tensor, c: MathConstants):
    """exp(-z) = 2^k (1 + m) for z = 2u: (m, k)."""
    z_hi, z_lo = _tanh_argument(x, c)
    return _reduce(-z_hi, -z_lo, c.exp_min, c.exp_max, c)


def _tanh_slope(x: torch.Tensor, c: MathConstants) -> torch.Tensor:
    """dz/dx = C1 + 3 C3 x^2."""
    return c.c1_hi + (3 * c.c3) * (x * x)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    return _times_sigmoid(x, *_tanh_reduce(x, c), c)


def gelu_tanh_derivative(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    x = _clamp(x, c.tanh_x_max)
    s, sc = _sigmoid_pair(*_tanh_reduce(x, c), c)
    return s * (1 + (x * sc) * _tanh_slope(x, c))


def gelu_tanh_second_derivative(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    x = _clamp(x, c.tanh_x_max)
    s, sc = _sigmoid_pair(*_tanh_reduce(x, c), c)
    slope = _tanh_slope(x, c)
    inner = (2 * slope + (x * (sc - s)) * (slope * slope)) + (6 * c.c3) * (x * x)
    return (s * sc) * inner


# ---- gelu: x * Phi(x), Phi the standard normal CDF ------------------------------------------------------------


def _gelu_reduce(x: torch.Tensor, c: MathConstants):
    """exp(-x^2 / 2) = 2^k (1 + m): (m, k); |x| lowered to gelu_y_max, where the exponential rounds to 0."""
    y = x.abs()
    y = torch.where(y > c.gelu_y_max, c.gelu_y_max, y)
    y_hi = _split(y, c.split_mask_gelu, c)
    y_lo = y - y_hi
    return _reduce((y_hi * y_hi) * -0.5, (y_lo * (y + y_hi)) * -0.5, c.gelu_exp_min, 0.0, c)


def _gelu_tail_ratio(x: torch.Tensor, c: MathConstants) -> torch.Tensor:
    """Phi(-y) / exp(-y^2 / 2) = N(y) / M(y), y = |x| (for the derivatives)."""
    y = x.abs()
    y = torch.where(y > c.gelu_y_max, c.gelu_y_max, y)
    return _horner(c.gelu_tail_numerator, y) / _horner(c.gelu_tail_denominator, y)


def _gelu_tail(x: torch.Tensor, c: MathConstants):
    """y Phi(-y) / exp(-y^2 / 2) = q0 + delta, y = |x| lowered to gelu_y_max: (q0, delta)."""
    y = x.abs()
    y = torch.where(y > c.gelu_y_max, c.gelu_y_max, y)
    if c.gelu_tail_split is None:  # float64: one piece
        return 0.0, (y * _horner(c.gelu_tail_numerator, y)) / _horner(c.gelu_tail_denominator, y)
    near = _horner(c.gelu_tail_near_poly, y - c.gelu_tail_center)
    far = _horner(c.gelu_tail_far_poly, 1 / (y * y + c.gelu_tail_far_shift))
    return c.gelu_tail_q0, torch.where(y < c.gelu_tail_split, near, far)


def _gelu_tail_value(q0, delta: torch.Tensor, m: torch.Tensor, k: torch.Tensor, c: MathConstants) -> torch.Tensor:
    """y Phi(-y) = 2^k q0 + 2^k (delta + (q0 + delta) m): 2^k q0 is exact and the rest small, so the sum is rounded
    once of note (made 2^prescale times its size: one rounding below the normal range)."""
    scale = _power_of_two(k + c.prescale, c)
    rest = delta + (q0 + delta) * m
    return (q0 * scale + rest * scale) * c.prescale_back


def _gelu_center(x: torch.Tensor, c: MathConstants) -> torch.Tensor:
    """Phi(x) - 1/2 = x * C(x^2), used for |x| < gelu_center_end."""
    return x * _horner(c.gelu_center_poly, x * x)


def _phi(x: torch.Tensor, m: torch.Tensor, k: torch.Tensor, c: MathConstants) -> torch.Tensor:
    tail = _exp_value(m, k, c) * _gelu_tail_ratio(x, c)
    return torch.where(x.abs() < c.gelu_center_end, 0.5 + _gelu_center(x, c), torch.where(x < 0, tail, 1 - tail))


def gelu(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    center = x * (0.5 + _gelu_center(x, c))
    tail = _gelu_tail_value(*_gelu_tail(x, c), *_gelu_reduce(x, c), c)  # |x| Phi(-|x|)
    return torch.where(x.abs() < c.gelu_center_end, center, torch.where(x < 0, -tail, x - tail))


def gelu_derivative(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    x = _clamp(x, c.gelu_y_max)
    m, k = _gelu_reduce(x, c)
    return _phi(x, m, k, c) + x * (_exp_value(m, k, c) * c.inv_sqrt_2pi)


def gelu_second_derivative(x: torch.Tensor) -> torch.Tensor:
    c = _constants(x)
    x = _clamp(x, c.gelu_y_max)
    m, k = _gelu_reduce(x, c)
    return (_exp_value(m, k, c) * c.inv_sqrt_2pi) * (2 - x * x)


# ---- the table ---------------------------------------------------------------------------------------------------


def _relu(v: torch.Tensor) -> torch.Tensor:
    return torch.relu(v)  # NaN stays NaN, as every backend's ReLU does


ACTIVATIONS = {
    "identity": Activation("identity", lambda v: v, torch.ones_like, torch.zeros_like),
    "relu": Activation("relu", _relu, lambda v: (v > 0).to(v.dtype), torch.zeros_like),
    "gelu": Activation("gelu", gelu, gelu_derivative, gelu_second_derivative),
    "gelu_tanh": Activation("gelu_tanh", gelu_tanh, gelu_tanh_derivative, gelu_tanh_second_derivative),
    "silu": Activation("silu", silu, silu_derivative, silu_second_derivative),
}
