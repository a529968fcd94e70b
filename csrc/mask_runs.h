// The mask geometry as the kernels take it (docs/mask_spec.md, "Mask geometry"; fused_dropout/geometry.py makes
// it): element e of the local, row-major tensor has mask index
//
//     m(e) = sum over runs r of ((e / inner_r) % extent_r) * stride_r,   inner_r = product of the extents after r
//
// and uses the words of g = offset + m(e) (the geometry's base is folded into the offset by the caller). Runs are
// outermost first and their extents multiply to numel. No runs (count == 0) is the flat mask m(e) = e, the fast
// path of every kernel. Shared by the CPU and CUDA kernels and the CPU emulator of the CUDA bodies.
#pragma once

#include <stdint.h>

#include "host_device.h"

namespace fused_dropout {

// Any geometry of a tensor of rank <= 6 merges to at most 6 runs (fused_dropout/geometry.py); the Python layer
// says so and runs a composite beyond that.
constexpr int kMaxMaskRuns = 6;

struct MaskRuns {
  int32_t count = 0;                   // 0: the flat mask
  int64_t extent[kMaxMaskRuns] = {};   // outermost first
  int64_t stride[kMaxMaskRuns] = {};   // >= 0; 0 where the mask is broadcast

  FD_HOST_DEVICE bool flat() const { return count == 0; }
  // The extent and stride of the innermost run: consecutive elements inside it have mask indices that step by
  // its stride (1: consecutive words, 0: one shared decision).
  FD_HOST_DEVICE int64_t inner_extent() const { return extent[count - 1]; }
  FD_HOST_DEVICE int64_t inner_stride() const { return stride[count - 1]; }
};

// m(e) for a geometry with runs (count >= 1).
FD_HOST_DEVICE uint64_t mask_index(const MaskRuns& runs, int64_t e) {
  uint64_t m = 0;
  for (int r = runs.count - 1; r >= 0; --r) {
    const int64_t extent = runs.extent[r];
    m += static_cast<uint64_t>(e % extent) * static_cast<uint64_t>(runs.stride[r]);
    e /= extent;
  }
  return m;
}

}  // namespace fused_dropout
