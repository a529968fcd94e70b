// The math of the smooth activations (gelu, gelu_tanh, silu), their derivatives and second derivatives, for float
// and double, host and device. Every backend must give the same bits, so the functions use multiplies, adds,
// subtracts and divides only, each rounded once (the _rn intrinsics on the device, -ffp-contract=off on the host:
// nothing is contracted into an FMA), plus bit operations: no libm or CUDA math call, whose rounding differs
// between CPU and GPU. fused_dropout/activations.py (torch) and fused_dropout/triton_backend/activation_math.py
// (Triton) are the same algorithm, operation for operation; tests/test_activation_math.py holds them bit-identical
// and measures the accuracy.
//
// The algorithm:
//  - exp(a) = 2^k (1 + m): k = round(a / ln 2) by adding 1.5 * 2^mantissa_bits (the integer lands in the low
//    bits), r = a - k ln2_hi - k ln2_lo (ln2_hi has few bits, so k ln2_hi and the subtraction are exact), and
//    m = e^r - 1 = r + r^2 P(r), |r| <= ln 2 / 2. 2^k is built from bits. An argument given as hi + lo (hi exact,
//    lo its small correction) adds lo into r, so its bits are not lost to rounding hi + lo.
//    The result is kept as (m, k): x * exp(a) is then x 2^k (exact) + (x 2^k) m, one rounding of note.
//  - x * sigmoid(z) = x / (1 + exp(-z)), with 1 + exp(-z) = (1 + 2^k) + 2^k m: 1 + 2^k is exact, so the
//    denominator is rounded once of note, the quotient once more. When k > 0 numerator and denominator are both
//    taken 2^-prescale times (exp(-z) up to e^110 stays finite, and the values below the normal range round once).
//    sigmoid and 1 - sigmoid come out of the same parts without cancellation (for the derivatives).
//  - silu(x) = x * sigmoid(x).
//  - gelu_tanh(x) = x * sigmoid(z), z = 2u = x (C1 + C3 x^2): 0.5 (1 + tanh u) = sigmoid(2u). The error of z
//    would be multiplied by |z| in exp(-z), so z is computed in two words: x and the sum are split into parts with
//    few bits (their products exact), the rest carried in z_lo.
//  - gelu(x) = x Phi(x): Phi(x) = 1/2 + x C(x^2) for |x| < 3/4. Beyond, y = |x|: gelu(-y) = -y Phi(-y) and
//    gelu(y) = y - y Phi(-y), with y Phi(-y) = exp(-y^2 / 2) Q(y), y^2 / 2 in two words (y's top half squared,
//    exactly, plus the rest), and Q = q0 + delta. float32: q0 = Q(1.375) rounded, delta in two pieces, a
//    polynomial of y - 1.375 (exact) below y = 2 and one of v = 1 / (y^2 + 3) from 2 (v's rounding moves Q by 0.22
//    of it at most). float64: q0 = 0, delta = y N(y) / M(y) (N, M with positive coefficients). Q (1 + m) 2^k is
//    summed as 2^k q0 (exact) + 2^k (delta + Q m), one rounding of note: so float32's tail meets the accuracy rule,
//    which the quotient of polynomials in y Phi(-y) = y exp(-y^2 / 2) N(y) / M(y) (N's and M's Horner roundings
//    adding up to a few ulp) does not. The derivatives, whose bound is looser, keep that quotient for Phi(-y):
//    one division fewer than Q / y, and no second piece.
//  - the polynomials were fitted in high precision (least squares on Chebyshev points, relative weights) with their
//    coefficients rounded to the type one at a time, the others refitted; their own error is below 0.1 ulp (0.2
//    for gelu's far tail piece).
//
// Accuracy (tests/test_activation_math.py measures it): float32 silu within 1.6 ulp everywhere; gelu within 1.95
// ulp everywhere (its tails within 1.8, the center near -3/4 where 1/2 + x C(x^2) cancels a little is the worst);
// gelu_tanh within 2 ulp wherever torch's float32 gelu(approximate="tanh") is (2.8 ulp at worst, where torch's is
// far worse). float64: all three within 1e-15 relative.
//
// Special values (float and double): NaN -> NaN (bits not specified: the ops canonicalise NaN when they write);
// +-0 -> +-0 (gelu, gelu_tanh, silu), derivative 1/2, second derivative 1/2 (silu) or sqrt(2/pi) (gelu,
// gelu_tanh); +inf -> +inf, derivative 1, second derivative 0 or a negligible value (below 1e-30); -inf -> -0
// (the limit; torch gives NaN), derivative and second derivative -0 or 0 (the limits; torch gives NaN).
// Subnormal inputs x: gelu, gelu_tanh and silu round x/2 (their exact value, correctly rounded).
#pragma once

#include <stdint.h>
#include <string.h>

#include "host_device.h"
#include "rounded_arithmetic.h"

namespace fused_dropout {
namespace activation_math {

// c0 + r (c1 + r (c2 + ...)), lowest degree first.
template <typename T>
FD_HOST_DEVICE T horner(T, T c0) {
  return c0;
}
template <typename T, typename... Rest>
FD_HOST_DEVICE T horner(T r, T c0, Rest... rest) {
  return fd_add(fd_mul(horner(r, rest...), r), c0);
}

// ---- the constants of each type (fused_dropout/activations.py has the same numbers) -------------------------

// y Phi(-y) / exp(-y^2 / 2) = q0 + delta: q0 a constant (exact), delta the part that varies (Constants::gelu_tail).
template <typename T>
struct GeluTail {
  T q0, delta;
};

template <typename T>
struct Constants;

template <>
struct Constants<float> {
  using Bits = uint32_t;
  using Int = int32_t;
  static constexpr int kMantissaBits = 23;
  static constexpr int kExponentBias = 127;
  static constexpr int kPrescale = 64;
  static constexpr float kPrescaleBack = 0x1p-64f;
  static constexpr float kExpMin = -110.0f;  // sigmoids: 1 - sigmoid rounds to 0
  static constexpr float kExpMax = 110.0f;   // sigmoids: x exp(-110) rounds to 0 for every x
  static constexpr float kGeluExpMin = -110.0f;  // gelu: exp(-110) rounds to 0
  static constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  static constexpr Bits kMagicBits = 0x4B400000u;
  static constexpr float kLog2e = 1.4426950216293335f;
  static constexpr float kLn2Hi = 0.693359375f;
  static constexpr float kLn2Lo = -0.00021219444170128554f;
  static constexpr Bits kSplitMaskGelu = 0xFFFFF000u;  // 12 significant bits: their square is exact
  static constexpr float kGeluYMax = 16.0f;
  static constexpr float kGeluCenterEnd = 0.75f;
  static constexpr float kGeluTailSplit = 2.0f;
  static constexpr float kGeluTailCenter = 1.375f;
  static constexpr float kGeluTailFarShift = 3.0f;
  static constexpr float kGeluTailQ0 = 0.29925474524497986f;  // y Phi(-y) / exp(-y^2 / 2) at kGeluTailCenter
  static constexpr float kInvSqrt2Pi = 0.3989422917366028f;
  static constexpr float kTanhXMax = 12.0f;
  static constexpr Bits kSplitMaskX = 0xFFFF0000u;  // 8 bits: x_hi^2 (16) times C3_HI (8) is exact
  static constexpr Bits kSplitMaskW = 0xFFFFFF00u;  // 16 bits: x_hi (8) times w_hi (16) is exact
  static constexpr float kC1Hi = 1.5957691669464111f;  // 2 sqrt(2 / pi)
  static constexpr float kC1Lo = -4.534068054340423e-08f;
  static constexpr float kC3Hi = 0.0712890625f;  // 2 sqrt(2 / pi) 0.044715
  static constexpr float kC3Lo = 6.575377483386546e-05f;
  static constexpr float kC3 = 0.07135481387376785f;

  // e^r = 1 + r + r^2 P(r), |r| <= ln 2 / 2 + 0.0005
  FD_HOST_DEVICE static float exp_poly(float r) {
    return horner(r, 0.49999988079071045f, 0.166665181517601f, 0.041669659316539764f, 0.008368968032300472f,
                  0.0013744543539360166f);
  }
  // Phi(-y) = exp(-y^2 / 2) N(y) / M(y), 3/4 <= y <= 14.5 (for the derivatives: a few ulp)
  FD_HOST_DEVICE static float gelu_tail_numerator(float y) {
    return horner(y, 0.49999961256980896f, 0.5367918610572815f, 0.2784487009048462f, 0.08387240767478943f,
                  0.014694158919155598f, 0.0012531443499028683f);
  }
  FD_HOST_DEVICE static float gelu_tail_denominator(float y) {
    return horner(y, 1.0f, 1.871462345123291f, 1.5501292943954468f, 0.7347532510757446f, 0.21338044106960297f,
                  0.03683272376656532f, 0.003141168039292097f);
  }
  // y Phi(-y) = exp(-y^2 / 2) (q0 + delta), 3/4 <= y <= 16, delta in two pieces: below kGeluTailSplit a polynomial
  // of y - kGeluTailCenter (exact), from there one of v = 1 / (y^2 + 3), degree 7 (v's relative rounding error
  // moves Q by at most 0.22 times as much).
  FD_HOST_DEVICE static GeluTail<float> gelu_tail(float y) {
    const float near = horner(fd_sub(y, kGeluTailCenter), 1.188748566249842e-08f, 0.08056946098804474f,
                              -0.04429596662521362f, 0.019983069971203804f, -0.007896998897194862f,
                              0.002817891538143158f, -0.0009286471758969128f, 0.0003086742071900517f,
                              -9.159733599517494e-05f);
    const float far = horner(fd_div(1.0f, fd_add(fd_mul(y, y), kGeluTailFarShift)), 0.09968750178813934f,
                             -0.3989306092262268f, -0.0013561483938246965f, -2.317373514175415f, 7.07512903213501f,
                             -46.18175506591797f, 139.5160369873047f, -287.5244140625f);
    return {kGeluTailQ0, y < kGeluTailSplit ? near : far};
  }
  // Phi(x) - 1/2 = x C(x^2), |x| < 3/4
  FD_HOST_DEVICE static float gelu_center(float w) {
    return horner(w, 0.3989422917366028f, -0.06649058312177658f, 0.009974176995456219f, -0.001185589819215238f,
                  0.00010632482008077204f);
  }
};

template <>
struct Constants<double> {
  using Bits = uint64_t;
  using Int = int64_t;
  static constexpr int kMantissaBits = 52;
  static constexpr int kExponentBias = 1023;
  static constexpr int kPrescale = 128;
  static constexpr double kPrescaleBack = 0x1p-128;
  static constexpr double kExpMin = -760.0;
  static constexpr double kExpMax = 760.0;
  static constexpr double kGeluExpMin = -760.0;
  static constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr Bits kMagicBits = 0x4338000000000000ull;
  static constexpr double kLog2e = 1.4426950408889634;
  static constexpr double kLn2Hi = 0.6931471803691238;
  static constexpr double kLn2Lo = 1.9082149292705877e-10;
  static constexpr Bits kSplitMaskGelu = 0xFFFFFFFFF8000000ull;  // 26 bits
  static constexpr double kGeluYMax = 40.0;
  static constexpr double kGeluCenterEnd = 0.75;
  static constexpr double kInvSqrt2Pi = 0.3989422804014327;
  static constexpr double kTanhXMax = 30.0;
  static constexpr Bits kSplitMaskX = 0xFFFFFFF000000000ull;  // 17 bits: x_hi^2 (34) times C3_HI (19) is exact
  static constexpr Bits kSplitMaskW = 0xFFFFFFFFFFFE0000ull;  // 36 bits: x_hi (17) times w_hi (36) is exact
  static constexpr double kC1Hi = 1.5957691216057308;
  static constexpr double kC1Lo = -9.96930880911092e-17;
  static constexpr double kC3Hi = 0.07135486602783203;
  static constexpr double kC3Lo = -4.975523178247366e-08;
  static constexpr double kC3 = 0.07135481627260025;

  FD_HOST_DEVICE static double exp_poly(double r) {
    return horner(r, 0.5000000000000013, 0.16666666666666488, 0.04166666666651182, 0.008333333333447287,
                  0.001388888894779552, 0.00019841269607173592, 2.4801489225511812e-05, 2.7557497365797654e-06,
                  2.7631518290783527e-07, 2.5028076338831574e-08);
  }
  // Phi(-y) = exp(-y^2 / 2) N(y) / M(y), 3/4 <= y <= 39
  FD_HOST_DEVICE static double gelu_tail_numerator(double y) {
    return horner(y, 0.5000000000016525, 0.8598820143556222, 0.7312847341627936, 0.39856226490667407,
                  0.15295211177312182, 0.04304020368039161, 0.008992868628351983, 0.0013815055239908482,
                  0.00015025440320516807, 1.0562448829621515e-05, 3.7231593766507007e-07);
  }
  FD_HOST_DEVICE static double gelu_tail_denominator(double y) {
    return horner(y, 1.0, 2.5176485895521834, 2.9713624072487956, 2.175065945314418, 1.1002722010334212,
                  0.4051919333484476, 0.1112957601113566, 0.022916544191867894, 0.0034893969409236125,
                  0.00037756519311772034, 2.64761328856776e-05, 9.332576564469973e-07);
  }
  // y Phi(-y) = exp(-y^2 / 2) y N(y) / M(y): one piece, q0 = 0
  FD_HOST_DEVICE static GeluTail<double> gelu_tail(double y) {
    return {0.0, fd_div(fd_mul(y, gelu_tail_numerator(y)), gelu_tail_denominator(y))};
  }
  FD_HOST_DEVICE static double gelu_center(double w) {
    return horner(w, 0.39894228040143265, -0.06649038006690196, 0.009973557009920786, -0.001187328213773462,
                  0.00011543467398803377, -9.444592621269225e-06, 6.657900928488273e-07, -4.092618668383904e-08,
                  1.995580581535199e-09);
  }
};

// ---- bits --------------------------------------------------------------------------------------------------

template <typename T>
FD_HOST_DEVICE typename Constants<T>::Bits bits_of(T v) {
  typename Constants<T>::Bits bits;
  memcpy(&bits, &v, sizeof(bits));
  return bits;
}
template <typename T>
FD_HOST_DEVICE T from_bits(typename Constants<T>::Bits bits) {
  T v;
  memcpy(&v, &bits, sizeof(v));
  return v;
}
// v with its low mantissa bits cleared: few enough bits are left that products of such parts are exact.
template <typename T>
FD_HOST_DEVICE T split(T v, typename Constants<T>::Bits mask) {
  return from_bits<T>(bits_of(v) & mask);
}
// 2^exponent for an exponent in the normal range.
template <typename T>
FD_HOST_DEVICE T power_of_two(typename Constants<T>::Int exponent) {
  using C = Constants<T>;
  using Bits = typename C::Bits;
  return from_bits<T>(static_cast<Bits>(static_cast<Bits>(exponent) + static_cast<Bits>(C::kExponentBias))
                      << C::kMantissaBits);
}
// |v|: the sign bit cleared (as torch.abs and tl.abs do: |-0| = +0).
template <typename T>
FD_HOST_DEVICE T abs_value(T v) {
  using Bits = typename Constants<T>::Bits;
  return from_bits<T>(bits_of(v) & (~Bits(0) >> 1));
}
// x in [-bound, bound], NaN kept: the derivatives take their limits beyond.
template <typename T>
FD_HOST_DEVICE T clamp(T x, T bound) {
  return x > bound ? bound : (x < -bound ? -bound : x);
}

// ---- exp ---------------------------------------------------------------------------------------------------

// exp(hi + lo) = 2^k (1 + m).
template <typename T>
struct Reduced {
  T m;
  typename Constants<T>::Int k;
};

// hi is clamped to [lower, upper] (NaN stays NaN); kLo: lo (below 2 in size) joins the reduced argument.
template <typename T, bool kLo>
FD_HOST_DEVICE Reduced<T> reduce(T hi, T lo, T lower, T upper) {
  using C = Constants<T>;
  hi = hi < lower ? lower : hi;
  hi = hi > upper ? upper : hi;
  const T k_magic = fd_add(fd_mul(kLo ? fd_add(hi, lo) : hi, C::kLog2e), C::kMagic);
  const T k = fd_sub(k_magic, C::kMagic);
  T r = fd_sub(hi, fd_mul(k, C::kLn2Hi));
  if (kLo) r = fd_add(r, lo);
  r = fd_sub(r, fd_mul(k, C::kLn2Lo));
  const T m = fd_add(r, fd_mul(fd_mul(r, r), C::exp_poly(r)));
  return {m, static_cast<typename C::Int>(bits_of(k_magic) - C::kMagicBits)};
}

// (1 + m) 2^k for k <= 0: scaled up first, so the one rounding below the normal range is the last multiply.
template <typename T>
FD_HOST_DEVICE T exp_value(Reduced<T> e) {
  using C = Constants<T>;
  return fd_mul(fd_mul(fd_add(T(1), e.m), power_of_two<T>(e.k + C::kPrescale)), C::kPrescaleBack);
}

// ---- sigmoid -------------------------------------------------------------------------------------------------

// (1 + exp(-z)) P = (P + S) + S m, S = 2^k P (rounded below the normal range); P = 1 when k <= 0, 2^-prescale
// when k > 0. scaled = S, or 2^prescale S when k <= 0 (normal down to kExpMin): 1 - sigmoid is made from it.
template <typename T>
struct Denominator {
  T p, scaled, value;
};
template <typename T>
FD_HOST_DEVICE Denominator<T> denominator(Reduced<T> e) {
  using C = Constants<T>;
  const bool positive = e.k > 0;
  const T p = positive ? C::kPrescaleBack : T(1);
  const T scaled = power_of_two<T>(positive ? e.k - C::kPrescale : e.k + C::kPrescale);
  const T s = positive ? scaled : fd_mul(scaled, C::kPrescaleBack);
  const T sm = fd_mul(s, e.m);
  // (P + S) + S m while P + S is exact; past 2^kMantissaBits, S m joins P first (P + S would round).
  const bool beyond = e.k > C::kMantissaBits;
  return {p, scaled, fd_add(fd_add(p, beyond ? sm : s), beyond ? s : sm)};
}

// x sigmoid(z) from exp(-z): (x P) / ((1 + exp(-z)) P), x raised to -kExpMax (where the value rounds to 0).
template <typename T>
FD_HOST_DEVICE T times_sigmoid(T x, Reduced<T> e) {
  using C = Constants<T>;
  const Denominator<T> d = denominator(e);
  x = x < -C::kExpMax ? -C::kExpMax : x;
  return fd_div(fd_mul(x, d.p), d.value);
}

// sigmoid(z) and 1 - sigmoid(z) = (P, S + S m) / ((1 + exp(-z)) P), neither by cancellation; 1 - sigmoid is made
// at 2^prescale times its size when k <= 0 and scaled back last (one rounding below the normal range).
template <typename T>
struct SigmoidPair {
  T s, sc;
};
template <typename T>
FD_HOST_DEVICE SigmoidPair<T> sigmoid_pair(Reduced<T> e) {
  using C = Constants<T>;
  const Denominator<T> d = denominator(e);
  const T reciprocal = fd_div(T(1), d.value);
  const T back = e.k > 0 ? T(1) : C::kPrescaleBack;
  return {fd_mul(d.p, reciprocal), fd_mul(fd_mul(fd_add(d.scaled, fd_mul(d.scaled, e.m)), reciprocal), back)};
}

// ---- silu ----------------------------------------------------------------------------------------------------

template <typename T>
FD_HOST_DEVICE Reduced<T> silu_reduce(T x) {
  using C = Constants<T>;
  return reduce<T, false>(-x, T(0), C::kExpMin, C::kExpMax);
}

// ---- gelu_tanh -----------------------------------------------------------------------------------------------

// exp(-z), z = 2u = x (C1 + C3 x^2) in two words, |x| lowered to kTanhXMax.
template <typename T>
FD_HOST_DEVICE Reduced<T> tanh_reduce(T x) {
  using C = Constants<T>;
  x = clamp(x, C::kTanhXMax);
  const T x_hi = split(x, C::kSplitMaskX);
  const T x_lo = fd_sub(x, x_hi);
  const T square_hi = fd_mul(x_hi, x_hi);
  const T square_lo = fd_mul(x_lo, fd_add(x, x_hi));
  const T cubic_hi = fd_mul(C::kC3Hi, square_hi);
  const T cubic_lo = fd_add(fd_mul(C::kC3Lo, square_hi), fd_mul(C::kC3, square_lo));
  const T w = fd_add(C::kC1Hi, cubic_hi);  // C1 + C3 x^2, its rounding error recovered exactly (two-sum)
  const T b = fd_sub(w, C::kC1Hi);
  T w_lo = fd_add(fd_sub(C::kC1Hi, fd_sub(w, b)), fd_sub(cubic_hi, b));
  w_lo = fd_add(fd_add(w_lo, cubic_lo), C::kC1Lo);
  const T w_hi = split(w, C::kSplitMaskW);
  const T z_hi = fd_mul(x_hi, w_hi);
  const T z_lo = fd_add(fd_add(fd_mul(x_hi, fd_sub(w, w_hi)), fd_mul(x_lo, w)), fd_mul(x, w_lo));
  return reduce<T, true>(-z_hi, -z_lo, C::kExpMin, C::kExpMax);
}

// dz/dx = C1 + 3 C3 x^2
template <typename T>
FD_HOST_DEVICE T tanh_slope(T x) {
  using C = Constants<T>;
  return fd_add(C::kC1Hi, fd_mul(T(3) * C::kC3, fd_mul(x, x)));
}

// ---- gelu ----------------------------------------------------------------------------------------------------

// exp(-x^2 / 2), |x| lowered to kGeluYMax (where it rounds to 0).
template <typename T>
FD_HOST_DEVICE Reduced<T> gelu_reduce(T x) {
  using C = Constants<T>;
  T y = abs_value(x);
  y = y > C::kGeluYMax ? C::kGeluYMax : y;
  const T y_hi = split(y, C::kSplitMaskGelu);
  const T y_lo = fd_sub(y, y_hi);
  return reduce<T, true>(fd_mul(fd_mul(y_hi, y_hi), T(-0.5)), fd_mul(fd_mul(y_lo, fd_add(y, y_hi)), T(-0.5)), C::kGeluExpMin,
                         T(0));
}

// Phi(-y) / exp(-y^2 / 2) = N(y) / M(y), y = |x| (for the derivatives).
template <typename T>
FD_HOST_DEVICE T gelu_tail_ratio(T x) {
  using C = Constants<T>;
  T y = abs_value(x);
  y = y > C::kGeluYMax ? C::kGeluYMax : y;
  return fd_div(C::gelu_tail_numerator(y), C::gelu_tail_denominator(y));
}

// y Phi(-y) / exp(-y^2 / 2) = q0 + delta, y = |x| lowered to kGeluYMax.
template <typename T>
FD_HOST_DEVICE GeluTail<T> gelu_tail(T x) {
  using C = Constants<T>;
  T y = abs_value(x);
  y = y > C::kGeluYMax ? C::kGeluYMax : y;
  return C::gelu_tail(y);
}

// y Phi(-y) = 2^k (1 + m) (q0 + delta) = 2^k q0 + 2^k (delta + (q0 + delta) m): 2^k q0 is exact and the rest
// small, so the sum is rounded once of note (made 2^prescale times its size: one rounding below the normal range).
template <typename T>
FD_HOST_DEVICE T gelu_tail_value(GeluTail<T> q, Reduced<T> e) {
  using C = Constants<T>;
  const T scale = power_of_two<T>(e.k + C::kPrescale);
  const T rest = fd_add(q.delta, fd_mul(fd_add(q.q0, q.delta), e.m));
  return fd_mul(fd_add(fd_mul(q.q0, scale), fd_mul(rest, scale)), C::kPrescaleBack);
}

// Phi(x) - 1/2 = x C(x^2), |x| < kGeluCenterEnd.
template <typename T>
FD_HOST_DEVICE T gelu_center(T x) {
  return fd_mul(x, Constants<T>::gelu_center(fd_mul(x, x)));
}

template <typename T>
FD_HOST_DEVICE bool in_gelu_center(T x) {
  return abs_value(x) < Constants<T>::kGeluCenterEnd;
}

// Phi(x) for |x| <= kGeluYMax.
template <typename T>
FD_HOST_DEVICE T phi(T x, Reduced<T> e) {
  const T tail = fd_mul(exp_value(e), gelu_tail_ratio(x));
  return in_gelu_center(x) ? fd_add(T(0.5), gelu_center(x)) : (x < T(0) ? tail : fd_sub(T(1), tail));
}

}  // namespace activation_math
}  // namespace fused_dropout
