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

// High 32-bit half of a 32x32 -> 64-bit product, the host form: a plain 64-bit multiply, which host compilers
// vectorise (vpmuludq on AVX2).
FD_HOST_DEVICE uint32_t philox_mulhi(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

// Both halves of a * b. On the GPU one PTX mul.wide.u32 (one IMAD.WIDE.U32 whose register pair holds both
// halves): left to itself nvcc emits a mul.hi and a separate mul.lo, two multiplies per product. The host keeps the
// portable form the CPU kernels vectorise.
FD_HOST_DEVICE void philox_mul(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  uint64_t product;
  asm("mul.wide.u32 %0, %1, %2;" : "=l"(product) : "r"(a), "r"(b));
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
#else
  hi = philox_mulhi(a, b);
  lo = a * b;
#endif
}

// One Philox round on the counter c under the round key (k0, k1).
FD_HOST_DEVICE void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  uint32_t hi0, lo0, hi1, lo1;
  philox_mul(kPhiloxRoundB, c2, hi0, lo0);
  philox_mul(kPhiloxRoundA, c0, hi1, lo1);
  c0 = hi0 ^ c1 ^ k0;
  c2 = hi1 ^ c3 ^ k1;
  c1 = lo0;
  c3 = lo1;
}

FD_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int round = 0; round < kPhiloxRounds; ++round) {
    philox_round(c0, c1, c2, c3, k0, k1);
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The round keys of a seed, computed once: a GPU thread that makes many Philox calls under one seed would
// otherwise recompute the two key additions of every round in every call.
struct PhiloxKeySchedule {
  uint32_t k0[kPhiloxRounds];
  uint32_t k1[kPhiloxRounds];
  FD_HOST_DEVICE explicit PhiloxKeySchedule(uint64_t seed) {
    uint32_t a = static_cast<uint32_t>(seed), b = static_cast<uint32_t>(seed >> 32);
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int round = 0; round < kPhiloxRounds; ++round) {
      k0[round] = a;
      k1[round] = b;
      a += kPhiloxKeyA;
      b += kPhiloxKeyB;
    }
  }
};

// philox4x32_10 under a precomputed key schedule: the same rounds, so the same words.
FD_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                     const PhiloxKeySchedule& keys) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int round = 0; round < kPhiloxRounds; ++round) philox_round(c0, c1, c2, c3, keys.k0[round], keys.k1[round]);
  return Philox4{{c0, c1, c2, c3}};
}

// The four random words for Philox group `group` (see mask_position in dropout_math.h) under a 64-bit seed.
FD_HOST_DEVICE Philox4 philox_group(uint64_t seed, uint64_t group) {
  return philox4x32_10(static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// The same words, under the seed's precomputed key schedule.
FD_HOST_DEVICE Philox4 philox_group(const PhiloxKeySchedule& keys, uint64_t group) {
  return philox4x32_10(static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32), 0u, 0u, keys);
}

}  // namespace fused_dropout
