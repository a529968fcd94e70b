// Philox4x32-10 for 20 consecutive groups at once with AVX2: the same rounds and constants as philox.h (tests hold
// the two bit-identical). The layout of philox_avx512.h at half the width: each counter word sits in the low half
// of a 64-bit lane, 4 groups per register, so vpmuludq gives the whole product of every lane, its high half one
// 64-bit shift away. A round is 2 multiplies, 2 shifts and 4 XORs per 4 groups (8 groups per register needed 18
// operations per 8 groups: a shift to reach the odd lanes, blends and shifts to split both halves again).
// Five batches of 4 groups are in flight: a round's chain (multiply, shift, XOR) is ~5 cycles long and its 8
// operations take 2 cycles of the vector pipes, so fewer batches leave the pipes idle. Their 20 state registers
// do not fit in 16, and the spills (loads and stores, not vector ALU work) cost less than the idle pipes: per
// word, 2 batches took 0.54-0.58 ns, 3 0.49-0.50, 4 0.47-0.48, 5 0.43-0.44 and 6 0.52-0.53 on an AMD EPYC Zen 5
// (a loop of calls alone, 4.2 GHz). The XOR with the round key comes first (c1 ^ k0 while the multiply runs),
// off the chain. The first two rounds take the shortcuts of philox_avx512.h (see there), and the round keys come
// from memory, as there. Compilers do not find any of this from the scalar code.
// Include only where AVX2 is enabled.
#pragma once

#include <immintrin.h>
#include <stdint.h>

#include "../philox.h"

namespace fused_dropout {
namespace cpu {

constexpr int kAvx2PhiloxBatches = 5;  // of 4 groups
constexpr int64_t kAvx2PhiloxGroups = 4 * kAvx2PhiloxBatches;

// The high dword of each 64-bit lane moved into its low dword (what the multiplies read). A shift, not a dword
// shuffle: on Zen 5 the shift measured 1-2% faster, and either leaves the low dword right.
inline __attribute__((always_inline)) __m256i high_to_low(__m256i v) {
  return _mm256_srli_epi64(v, 32);
}

// The two dwords of each 64-bit lane swapped.
inline __attribute__((always_inline)) __m256i swap_halves(__m256i v) {
  return _mm256_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1));
}

// Writes the 80 words of groups group0 .. group0 + 19 to out[0..80), group by group (4 words each), under the
// seed's round keys. The 20 groups must share their high word (philox_step_shares_high_word).
inline void philox20_avx2(const PhiloxKeySchedule& schedule, uint64_t group0, uint32_t* out) {
  constexpr int kBatches = kAvx2PhiloxBatches;
  // Read in every call (a broadcast load): hoisted out of the caller's loop, 20 key registers would not fit.
  const PhiloxKeySchedule* keys = &schedule;
  asm("" : "+r"(keys));
  const uint32_t high = static_cast<uint32_t>(group0 >> 32);
  const __m256i round_a = _mm256_set1_epi64x(kPhiloxRoundA);
  const __m256i round_b = _mm256_set1_epi64x(kPhiloxRoundB);
  // Batch b holds groups 4b + (0, 2, 1, 3) in its 64-bit lanes: its low 128-bit half groups 4b and 4b + 2, its
  // high half 4b + 1 and 4b + 3, so the in-half unpacks at the end leave the groups in order (no cross-half
  // permute).
  const __m256i first_groups =
      _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(group0)), _mm256_setr_epi64x(0, 2, 1, 3));
  __m256i c0[kBatches], c1[kBatches], c2[kBatches], c3[kBatches];

  // Round 1 on the counter (lo(g), high, 0, 0): word 0's product makes words 2 and 3; word 0 becomes high ^ k0
  // (all lanes) and word 1 becomes 0.
  const __m256i key1_round1 = _mm256_set1_epi32(static_cast<int>(keys->k1[0]));
  for (int b = 0; b < kBatches; ++b) {
    // The low word of each 64-bit lane is lo(g); no lane carries out of it (the step's high word is uniform).
    const __m256i group_low = _mm256_add_epi64(first_groups, _mm256_set1_epi64x(4 * b));
    const __m256i product1 = _mm256_mul_epu32(group_low, round_a);
    c2[b] = _mm256_xor_si256(high_to_low(product1), key1_round1);
    c3[b] = product1;
  }
  const uint32_t word0_round1 = high ^ keys->k0[0];

  // Round 2: word 0 is word0_round1 in every lane, its product one scalar multiply; word 1 is 0.
  const uint64_t product1_round2 = static_cast<uint64_t>(word0_round1) * kPhiloxRoundA;
  const __m256i key0_round2 = _mm256_set1_epi32(static_cast<int>(keys->k0[1]));
  const __m256i high1_key1 =
      _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(product1_round2 >> 32) ^ keys->k1[1]));
  const __m256i low1 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(product1_round2)));
  for (int b = 0; b < kBatches; ++b) {
    const __m256i product0 = _mm256_mul_epu32(c2[b], round_b);
    c0[b] = _mm256_xor_si256(high_to_low(product0), key0_round2);
    c2[b] = _mm256_xor_si256(c3[b], high1_key1);
    c1[b] = product0;
    c3[b] = low1;
  }

  for (int round = 2; round < kPhiloxRounds - 1; ++round) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(keys->k0[round]));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int>(keys->k1[round]));
    for (int b = 0; b < kBatches; ++b) {
      const __m256i product0 = _mm256_mul_epu32(c2[b], round_b);
      const __m256i product1 = _mm256_mul_epu32(c0[b], round_a);
      c0[b] = _mm256_xor_si256(high_to_low(product0), _mm256_xor_si256(c1[b], key0));
      c2[b] = _mm256_xor_si256(high_to_low(product1), _mm256_xor_si256(c3[b], key1));
      c1[b] = product0;
      c3[b] = product1;
    }
  }

  // Round 10 leaves each group's words as pairs (word 0, word 1) and (word 2, word 3) in 64-bit lanes: the
  // product's halves swapped put its high half under the low dword, where the XORs go (blended into the even
  // dwords only), and its low half, the new word 1 (or 3), above it. Then the lanes of each 128-bit half are
  // interleaved: half h of the low unpack is group 4b + h, of the high unpack group 4b + 2 + h.
  const __m256i key0 = _mm256_set1_epi32(static_cast<int>(keys->k0[kPhiloxRounds - 1]));
  const __m256i key1 = _mm256_set1_epi32(static_cast<int>(keys->k1[kPhiloxRounds - 1]));
  constexpr int kEvenDwords = 0x55;
  for (int b = 0; b < kBatches; ++b) {
    const __m256i swapped0 = swap_halves(_mm256_mul_epu32(c2[b], round_b));
    const __m256i swapped1 = swap_halves(_mm256_mul_epu32(c0[b], round_a));
    const __m256i w01 = _mm256_blend_epi32(
        swapped0, _mm256_xor_si256(swapped0, _mm256_xor_si256(c1[b], key0)), kEvenDwords);
    const __m256i w23 = _mm256_blend_epi32(
        swapped1, _mm256_xor_si256(swapped1, _mm256_xor_si256(c3[b], key1)), kEvenDwords);
    __m256i* dst = reinterpret_cast<__m256i*>(out + 16 * b);
    _mm256_storeu_si256(dst + 0, _mm256_unpacklo_epi64(w01, w23));  // groups 4b, 4b + 1
    _mm256_storeu_si256(dst + 1, _mm256_unpackhi_epi64(w01, w23));  // groups 4b + 2, 4b + 3
  }
}

}  // namespace cpu
}  // namespace fused_dropout
