// Activation policies of the forward element function (dropout_math.h), host and device, written once. Each
// has forward(v) and derivative(v) (the derivative at the pre-activation value v). A new activation (GELU, SiLU)
// is one more struct here and one column value in op_list.h.
#pragma once

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
};

}  // namespace fused_dropout
