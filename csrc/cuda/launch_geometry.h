// Block sizes and grid sizes of the CUDA kernels, as plain host functions: the launcher computes its geometry
// with them for the device it runs on, and the CPU emulator of the tests computes the same geometry for an H100
// (or a tiny grid that makes every thread loop), so the tests never re-type these numbers.
#pragma once

#include <stdint.h>

namespace fused_dropout {
namespace cuda {

constexpr int kFlatThreads = 256;  // grid-stride kernels (forward, backward, column sums)
constexpr int kTileThreads = 128;  // the row-tiled bias-gradient backward

// Resident blocks per multiprocessor of the grid-stride kernels of an element size. The kernels are compiled for
// it (__launch_bounds__ min-blocks caps their registers at 65536 / (kFlatThreads * blocks)) and launched with it
// (the grid is capped at that many blocks per multiprocessor), so a launch never asks for more resident blocks
// than fit. The 16-bit kernels fit in 32 registers: 8 blocks of 256 threads fill a multiprocessor. The float and
// double kernels need up to 64 (the bias ops): 4 blocks.
constexpr int blocks_per_sm(int element_bytes) { return element_bytes == 2 ? 6 : 4; }

// Block sizes and the grid-stride grid cap of one launch.
struct LaunchShape {
  int flat_threads;
  int tile_threads;
  int64_t sms;  // multiprocessors: a grid-stride grid holds at most sms * blocks_per_sm blocks
};

// The launcher's shape on a device with `sms` multiprocessors.
inline LaunchShape device_launch_shape(int sms) {
  return {kFlatThreads, kTileThreads, static_cast<int64_t>(sms > 0 ? sms : 1)};
}

struct Grid {
  int64_t x;
  int64_t y;
  int block;
};

// Blocks for a grid-stride loop over `work_items` of elements `element_bytes` wide: one item per thread, capped
// at the resident blocks (threads loop).
inline Grid flat_grid(int64_t work_items, int element_bytes, const LaunchShape& shape) {
  const int64_t needed = (work_items + shape.flat_threads - 1) / shape.flat_threads;
  const int64_t max_blocks = shape.sms * blocks_per_sm(element_bytes);
  const int64_t blocks = needed < max_blocks ? (needed > 0 ? needed : 1) : max_blocks;
  return {blocks, 1, shape.flat_threads};
}

}  // namespace cuda
}  // namespace fused_dropout
