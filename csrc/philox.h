// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), the counter-based
// generator behind the project's mask specification. This is the single definition of the generator: the CPU
// kernels, the CUDA kernels and the host-side test drivers all include it, so the bits cannot drift apart.
// It matches triton.language.randint4x(seed, offset) bit for bit for a 64-bit offset: counter = (offset_lo,
// offset_hi, 0, 0), key = (seed_lo, seed_hi).
#pragma once

#include <stdint.h>

#include "host_device.h"

namespace fused_dropout {

constexpr uint32_t kPhiloxRoundA = 0xD2511F53u;  // multiplier applied to counter word 0
constexpr uint32_t kPhiloxRoundB = 0xCD9E8D57u;  // multiplier applied to counter word 2
constexpr uint32_t kPhiloxKeyA = 0x9E3779B9u;    // golden-ratio key bump for key word 0
constexpr uint32_t kPhiloxKeyB = 0xBB67AE85u;    // sqrt(3)-1 key bump for key word 1
constexpr int kPhiloxRounds = 10;

struct Philox4 {
  uint32_t r[4];
};

// High and low 32-bit halves of a 32x32 -> 64-bit product. Written with a plain 64-bit multiply so that host
// compilers vectorise it (vpmuludq on AVX2) and nvcc emits mul.hi/mul.lo.
FD_HOST_DEVICE uint32_t philox_mulhi(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

FD_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const uint32_t hi0 = philox_mulhi(kPhiloxRoundB, c2);
    const uint32_t hi1 = philox_mulhi(kPhiloxRoundA, c0);
    const uint32_t lo0 = kPhiloxRoundB * c2;
    const uint32_t lo1 = kPhiloxRoundA * c0;
    c0 = hi0 ^ c1 ^ k0;
    c2 = hi1 ^ c3 ^ k1;
    c1 = lo0;
    c3 = lo1;
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The four random words for Philox group `group` (see mask_position in dropout_math.h) under a 64-bit seed.
FD_HOST_DEVICE Philox4 philox_group(uint64_t seed, uint64_t group) {
  return philox4x32_10(static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

}  // namespace fused_dropout
