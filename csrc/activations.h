// Activation policies of the forward element function (dropout_math.h), host and device, written once. Each
// has forward(v), derivative(v) and second_derivative(v) (at the pre-activation value v), for float and double.
// A new activation is one more struct here and one column value in op_list.h. The smooth ones compute with
// activation_math.h, which explains the algorithm, its accuracy and the special values.
#pragma once

#include "activation_math.h"
#include "host_device.h"

namespace fused_dropout {

struct Identity {
  template <typename T>
  FD_HOST_DEVICE static T forward(T v) {
    return v;
  }
  template <typename T>
  FD_HOST_DEVICE static T derivative(T) {
    return T(1);
  }
  template <typename T>
  FD_HOST_DEVICE static T second_derivative(T) {
    return T(0);
  }
};

struct Relu {
  // `v < 0 ? 0 : v`, not max(v, 0): NaN stays NaN, as torch.relu does.
  template <typename T>
  FD_HOST_DEVICE static T forward(T v) {
    return v < T(0) ? T(0) : v;
  }
  template <typename T>
  FD_HOST_DEVICE static T derivative(T v) {
    return v > T(0) ? T(1) : T(0);
  }
  template <typename T>
  FD_HOST_DEVICE static T second_derivative(T) {
    return T(0);
  }
};

// v Phi(v), Phi the standard normal CDF: torch's gelu (approximate="none"). In the tails (|v| >= 3/4)
// -y Phi(-y) at v = -y, v - y Phi(-y) at v = y.
struct Gelu {
  template <typename T>
  FD_HOST_DEVICE static T forward(T v) {
    namespace am = activation_math;
    const T center = fd_mul(v, fd_add(T(0.5), am::gelu_center(v)));
    const T tail = am::gelu_tail_value(am::gelu_tail(v), am::gelu_reduce(v));  // |v| Phi(-|v|)
    return am::in_gelu_center(v) ? center : (v < T(0) ? -tail : fd_sub(v, tail));
  }
  // Phi(v) + v phi(v)
  template <typename T>
  FD_HOST_DEVICE static T derivative(T v) {
    namespace am = activation_math;
    using C = am::Constants<T>;
    v = am::clamp(v, C::kGeluYMax);
    const am::Reduced<T> e = am::gelu_reduce(v);
    return fd_add(am::phi(v, e), fd_mul(v, fd_mul(am::exp_value(e), C::kInvSqrt2Pi)));
  }
  // phi(v) (2 - v^2)
  template <typename T>
  FD_HOST_DEVICE static T second_derivative(T v) {
    namespace am = activation_math;
    using C = am::Constants<T>;
    v = am::clamp(v, C::kGeluYMax);
    const am::Reduced<T> e = am::gelu_reduce(v);
    return fd_mul(fd_mul(am::exp_value(e), C::kInvSqrt2Pi), fd_sub(T(2), fd_mul(v, v)));
  }
};

// v sigmoid(2u), u = sqrt(2 / pi) (v + 0.044715 v^3): torch's gelu(approximate="tanh"), 0.5 v (1 + tanh u).
struct GeluTanh {
  template <typename T>
  FD_HOST_DEVICE static T forward(T v) {
    namespace am = activation_math;
    return am::times_sigmoid(v, am::tanh_reduce(v));
  }
  // s (1 + v (1 - s) z'), s = sigmoid(z), z' = dz/dv
  template <typename T>
  FD_HOST_DEVICE static T derivative(T v) {
    namespace am = activation_math;
    v = am::clamp(v, am::Constants<T>::kTanhXMax);
    const am::SigmoidPair<T> p = am::sigmoid_pair(am::tanh_reduce(v));
    return fd_mul(p.s, fd_add(T(1), fd_mul(fd_mul(v, p.sc), am::tanh_slope(v))));
  }
  // s (1 - s) (2 z' + v (1 - 2s) z'^2 + v z''), z'' = 6 C3 v
  template <typename T>
  FD_HOST_DEVICE static T second_derivative(T v) {
    namespace am = activation_math;
    using C = am::Constants<T>;
    v = am::clamp(v, C::kTanhXMax);
    const am::SigmoidPair<T> p = am::sigmoid_pair(am::tanh_reduce(v));
    const T slope = am::tanh_slope(v);
    const T inner = fd_add(fd_add(fd_mul(T(2), slope), fd_mul(fd_mul(v, fd_sub(p.sc, p.s)), fd_mul(slope, slope))),
                            fd_mul(T(6) * C::kC3, fd_mul(v, v)));
    return fd_mul(fd_mul(p.s, p.sc), inner);
  }
};

// v sigmoid(v): torch's silu.
struct Silu {
  template <typename T>
  FD_HOST_DEVICE static T forward(T v) {
    namespace am = activation_math;
    return am::times_sigmoid(v, am::silu_reduce(v));
  }
  // s (1 + v (1 - s))
  template <typename T>
  FD_HOST_DEVICE static T derivative(T v) {
    namespace am = activation_math;
    v = am::clamp(v, am::Constants<T>::kExpMax);
    const am::SigmoidPair<T> p = am::sigmoid_pair(am::silu_reduce(v));
    return fd_mul(p.s, fd_add(T(1), fd_mul(v, p.sc)));
  }
  // s (1 - s) (2 + v (1 - 2s))
  template <typename T>
  FD_HOST_DEVICE static T second_derivative(T v) {
    namespace am = activation_math;
    v = am::clamp(v, am::Constants<T>::kExpMax);
    const am::SigmoidPair<T> p = am::sigmoid_pair(am::silu_reduce(v));
    return fd_mul(fd_mul(p.s, p.sc), fd_add(T(2), fd_mul(v, fd_sub(p.sc, p.s))));
  }
};

}  // namespace fused_dropout
