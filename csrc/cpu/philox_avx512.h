// Philox4x32-10 for 32 consecutive groups at once with AVX-512F: the same rounds and constants as philox.h (tests
// hold the variants bit-identical). Each counter word sits in the low half of a 64-bit lane, 8 groups per
// register, so vpmuludq gives the whole 64-bit product of every lane in one instruction: its high half is one
// dword shuffle away (vpshufd, which runs on another port than the multiplies and 512-bit shifts of Skylake-SP)
// and its low half is already in place (the garbage above a low word is never read: vpmuludq ignores
// the upper halves and the words are packed from the lower halves). A round is then 2 multiplies, 2 shuffles and 2
// three-way XORs (vpternlogd) per 8 groups, and four independent batches hide the multiply latency.
//
// The first two rounds are cheaper, because the counter of group g is (lo(g), hi(g), 0, 0) and hi(g) is the same
// for the 32 groups of a step (a step that straddles a carry into the high word, once in 2^32 groups, is left to
// the scalar Philox by the caller):
//  - round 1: word 2 is zero, so its product is zero: word 0 becomes hi(g) ^ k0, the same in every lane, and
//    word 1 becomes 0. Only word 0's product is computed.
//  - round 2: word 0 is that same value in every lane, so its product is one scalar multiply.
// That is 4 + 4 vector operations per 8 groups instead of 6 + 6, the same words.
// Include only where AVX-512F is enabled.
#pragma once

#include <immintrin.h>
#include <stdint.h>

#include "../philox.h"

namespace fused_dropout {
namespace cpu {

constexpr int64_t kAvx512PhiloxGroups = 32;

// The high dword of each 64-bit lane copied into its low dword (what the multiplies read).
inline __attribute__((always_inline)) __m512i high_to_low(__m512i v) {
  return _mm512_shuffle_epi32(v, _MM_PERM_DDBB);
}

// The two dwords of each 64-bit lane swapped.
inline __attribute__((always_inline)) __m512i swap_halves(__m512i v) {
  return _mm512_shuffle_epi32(v, _MM_PERM_CDAB);
}

// Writes the 128 words of groups group0 .. group0 + 31 to out[0..128), group by group (4 words each), under the
// seed's round keys. The 32 groups must share their high word (philox_step_shares_high_word).
inline void philox32_avx512(const PhiloxKeySchedule& schedule, uint64_t group0, uint32_t* out) {
  // The round keys are read from memory in every call (a broadcast load, no ALU work): the compiler would
  // otherwise hoist their 20 broadcasts out of the caller's loop and spill the Philox state to make room.
  const PhiloxKeySchedule* keys = &schedule;
  asm("" : "+r"(keys));
  constexpr int kBatches = 4;
  constexpr int kXor3 = 0x96;  // vpternlogd truth table of a ^ b ^ c
  const uint32_t high = static_cast<uint32_t>(group0 >> 32);
  const __m512i round_a = _mm512_set1_epi64(kPhiloxRoundA);
  const __m512i round_b = _mm512_set1_epi64(kPhiloxRoundB);
  // The lanes of batch b hold groups 8b + (0, 4, 1, 5, 2, 6, 3, 7): the order the last round's unpacks want.
  const __m512i first_groups = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(group0)),
                                                _mm512_setr_epi64(0, 4, 1, 5, 2, 6, 3, 7));
    __m512i c0[kBatches], c1[kBatches], c2[kBatches], c3[kBatches];

  // Round 1 on the counter (lo(g), high, 0, 0): word 0's product makes words 2 and 3; word 0 becomes high ^ k0
  // (all lanes) and word 1 becomes 0 (it stays implicit until round 2 sets it).
  const __m512i key1_round1 = _mm512_set1_epi32(static_cast<int>(keys->k1[0]));
  for (int b = 0; b < kBatches; ++b) {
    // The low word of each 64-bit lane is lo(g); no lane carries out of it (the step's high word is uniform).
    const __m512i group_low = _mm512_add_epi64(first_groups, _mm512_set1_epi64(8 * b));
    const __m512i product1 = _mm512_mul_epu32(group_low, round_a);
    c2[b] = _mm512_xor_si512(high_to_low(product1), key1_round1);
    c3[b] = product1;
  }
  const uint32_t word0_round1 = high ^ keys->k0[0];

  // Round 2: word 0 is word0_round1 in every lane, its product one scalar multiply; word 1 is 0.
  const uint64_t product1_round2 = static_cast<uint64_t>(word0_round1) * kPhiloxRoundA;
  const __m512i key0_round2 = _mm512_set1_epi32(static_cast<int>(keys->k0[1]));
  const __m512i high1_key1 =
      _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(product1_round2 >> 32) ^ keys->k1[1]));
  const __m512i low1 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(product1_round2)));
  for (int b = 0; b < kBatches; ++b) {
    const __m512i product0 = _mm512_mul_epu32(c2[b], round_b);
    c0[b] = _mm512_xor_si512(high_to_low(product0), key0_round2);
    c2[b] = _mm512_xor_si512(c3[b], high1_key1);
    c1[b] = product0;
    c3[b] = low1;
  }

  for (int round = 2; round < kPhiloxRounds - 1; ++round) {
    const __m512i key0 = _mm512_set1_epi32(static_cast<int>(keys->k0[round]));
    const __m512i key1 = _mm512_set1_epi32(static_cast<int>(keys->k1[round]));
    for (int b = 0; b < kBatches; ++b) {
      const __m512i product0 = _mm512_mul_epu32(c2[b], round_b);
      const __m512i product1 = _mm512_mul_epu32(c0[b], round_a);
      c0[b] = _mm512_ternarylogic_epi32(high_to_low(product0), c1[b], key0, kXor3);
      c2[b] = _mm512_ternarylogic_epi32(high_to_low(product1), c3[b], key1, kXor3);
      c1[b] = product0;
      c3[b] = product1;
    }
  }

  // Round 10 leaves each group's words as pairs (word 0, word 1) and (word 2, word 3) in 64-bit lanes: the
  // product's halves swapped put its high half under the low dword, where the XORs go (masked to the even dwords),
  // and its low half, the new word 1 (or 3), above it. The lanes hold groups 0, 4, 1, 5, 2, 6, 3, 7 of the batch,
  // so the in-block 64-bit unpacks give groups 0-3 and 4-7 in order.
  constexpr __mmask16 kEvenDwords = 0x5555;
  const __m512i key0 = _mm512_set1_epi32(static_cast<int>(keys->k0[kPhiloxRounds - 1]));
  const __m512i key1 = _mm512_set1_epi32(static_cast<int>(keys->k1[kPhiloxRounds - 1]));
  for (int b = 0; b < kBatches; ++b) {
    const __m512i product0 = _mm512_mul_epu32(c2[b], round_b);
    const __m512i product1 = _mm512_mul_epu32(c0[b], round_a);
    const __m512i w01 =
        _mm512_mask_ternarylogic_epi32(swap_halves(product0), kEvenDwords, c1[b], key0, kXor3);
    const __m512i w23 =
        _mm512_mask_ternarylogic_epi32(swap_halves(product1), kEvenDwords, c3[b], key1, kXor3);
    _mm512_storeu_si512(out + 32 * b, _mm512_unpacklo_epi64(w01, w23));
    _mm512_storeu_si512(out + 32 * b + 16, _mm512_unpackhi_epi64(w01, w23));
  }
}

}  // namespace cpu
}  // namespace fused_dropout
