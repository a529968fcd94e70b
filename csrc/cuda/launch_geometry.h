// Block sizes and grid sizes of the CUDA kernels, as plain host functions: the launcher computes its geometry
// with them for the device it runs on, and the CPU emulator of the tests computes the same geometry for an H100
// (or a tiny grid that makes every thread loop), so the tests never re-type these numbers.
#pragma once

#include <stdint.h>

namespace fused_dropout {
namespace cuda {

constexpr int kFlatThreads = 256;  // grid-stride kernels (forward, backward, column sums)
constexpr int kTileThreads = 128;  // the row-tiled bias-gradient backward
constexpr int kBlocksPerSm = 8;    // grid-stride kernels: enough resident blocks to hide latency, no more

// Block sizes and the grid-stride grid cap of one launch.
struct LaunchShape {
  int flat_threads;
  int tile_threads;
  int64_t max_flat_blocks;
};

// The launcher's shape on a device with `sms` multiprocessors.
inline LaunchShape device_launch_shape(int sms) {
  return {kFlatThreads, kTileThreads, static_cast<int64_t>(sms > 0 ? sms : 1) * kBlocksPerSm};
}

struct Grid {
  int64_t x;
  int64_t y;
  int block;
};

// Blocks for a grid-stride loop over `work_items`: one item per thread, capped at max_blocks (threads loop).
inline Grid flat_grid(int64_t work_items, const LaunchShape& shape) {
  const int64_t needed = (work_items + shape.flat_threads - 1) / shape.flat_threads;
  const int64_t blocks = needed < shape.max_flat_blocks ? (needed > 0 ? needed : 1) : shape.max_flat_blocks;
  return {blocks, 1, shape.flat_threads};
}

}  // namespace cuda
}  // namespace fused_dropout
