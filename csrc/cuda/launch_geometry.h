// Block sizes and grid sizes of the CUDA kernels, as plain host functions: the launcher computes its geometry
// with them for the device it runs on, and the CPU emulator of the tests computes the same geometry for an H100
// (or a tiny grid that makes every thread loop), so the tests never re-type these numbers.
#pragma once

#include <stdint.h>

namespace fused_dropout {
namespace cuda {

constexpr int kFlatThreads = 256;  // grid-stride kernels (forward, backward, column sums)
constexpr int kTileThreads = 128;  // the row-tiled bias-gradient backward

// Resident blocks per multiprocessor of a grid-stride kernel, by element size and the number of element streams it
// reads. The kernels are compiled for it (__launch_bounds__ min-blocks caps their registers at
// 65536 / (kFlatThreads * blocks)) and launched with it (the grid is capped at that many blocks per
// multiprocessor), so a launch never asks for more resident blocks than fit. 16-bit kernels reading up to two
// streams fit in 32 registers: 8 blocks of 256 threads fill a multiprocessor; dropout_add with a bias (three
// streams) needs 48: 5 blocks. The float and double kernels need up to 64: 4 blocks. No vector-path kernel spills;
// for sm_80 one scalar fallback (misaligned float mask_bwd bias-gradient tile) spills 16 bytes (test_cuda_compile).
constexpr int blocks_per_sm(int element_bytes, int streams_read) {
  return element_bytes == 2 ? (streams_read <= 2 ? 8 : 5) : 4;
}

// The kernels of a mask with runs (mask_runs.h) compute a chunk's mask index with 64-bit divisions, which are
// function calls on a GPU: at the 32-register cap of 8 blocks their 16-bit kernels spill. They are compiled for and
// launched with at most 4 resident blocks per multiprocessor (64 registers); the row tiles get a 128-register cap
// (ptxas's own choice for them spills too).
constexpr int kRunsMaxBlocksPerSm = 4;
constexpr int kRunsTileBlocksPerSm = 4;
constexpr int runs_blocks_per_sm(int flat_blocks_per_sm) {
  return flat_blocks_per_sm < kRunsMaxBlocksPerSm ? flat_blocks_per_sm : kRunsMaxBlocksPerSm;
}

// Block sizes and the grid-stride grid cap of one launch.
struct LaunchShape {
  int flat_threads;
  int tile_threads;
  int64_t sms;  // multiprocessors: a grid-stride grid holds at most sms * (its kernel's blocks_per_sm) blocks
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

// Blocks for a grid-stride loop over `work_items`: one item per thread, capped at the kernel's resident blocks
// (threads loop).
inline Grid flat_grid(int64_t work_items, int resident_blocks_per_sm, const LaunchShape& shape) {
  const int64_t needed = (work_items + shape.flat_threads - 1) / shape.flat_threads;
  const int64_t max_blocks = shape.sms * resident_blocks_per_sm;
  const int64_t blocks = needed < max_blocks ? (needed > 0 ? needed : 1) : max_blocks;
  return {blocks, 1, shape.flat_threads};
}

}  // namespace cuda
}  // namespace fused_dropout
