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
//    word 1 becomes 0. Only word 0's product is needed, and lo(g) * A = lo(g0) * A + j * A for the group j after
//    the step's first group g0 (no lane carries out of its low word): one scalar multiply and one 64-bit add of a
//    constant per 8 groups.
//  - round 2: word 0 is that same value in every lane, so its product is one scalar multiply.
// That is 3 + 4 vector operations per 8 groups instead of 6 + 6, the same words.
//
// The last two rounds leave each group's words in pairs without a shuffle of their own: round 9 swaps the
// products' halves (the shuffle every round has) so that each 64-bit lane holds (word 0, word 1) or (word 2,
// word 3) of the round's output, and round 10 XORs its products' high halves in place (the odd dwords) with the
// odd dwords of those pairs, leaving (word 1, word 0) and (word 3, word 2) per lane. One two-source dword permute
// per 4 groups then writes the words in the spec's order: 2 multiplies, 2 XORs and 2 permutes per 8 groups for
// round 10, where a shuffle per product and 64-bit unpacks took 8.
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

// j * kPhiloxRoundA for the groups j = 8b .. 8b + 7 of batch b: round 1's products, less lo(g0) * kPhiloxRoundA.
struct Round1Steps {
  alignas(64) uint64_t product[4][8];
  constexpr Round1Steps() : product{} {
    for (int j = 0; j < 32; ++j) product[j / 8][j % 8] = static_cast<uint64_t>(j) * kPhiloxRoundA;
  }
};
inline constexpr Round1Steps kRound1Steps{};

// Writes the 128 words of groups group0 .. group0 + 31 to out[0..128), group by group (4 words each), under the
// seed's round keys. The 32 groups must share their high word (philox_step_shares_high_word).
inline void philox32_avx512(const PhiloxKeySchedule& schedule, uint64_t group0, uint32_t* out) {
  // The round keys are read from memory in every call (a broadcast load, no ALU work): the compiler would
  // otherwise hoist their 20 broadcasts out of the caller's loop and spill the Philox state to make room.
  const PhiloxKeySchedule* keys = &schedule;
  asm("" : "+r"(keys));
  constexpr int kBatches = 4;
  static_assert(kBatches * 8 == kAvx512PhiloxGroups, "8 groups per register");
  constexpr int kXor3 = 0x96;  // vpternlogd truth table of a ^ b ^ c
  constexpr __mmask16 kEvenDwords = 0x5555, kOddDwords = 0xAAAA;
  const uint32_t high = static_cast<uint32_t>(group0 >> 32);
  const __m512i round_a = _mm512_set1_epi64(kPhiloxRoundA);
  const __m512i round_b = _mm512_set1_epi64(kPhiloxRoundB);
  // The lanes of batch b hold groups 8b .. 8b + 7 in order.
  __m512i c0[kBatches], c1[kBatches], c2[kBatches], c3[kBatches];

  // Round 1 on the counter (lo(g), high, 0, 0): word 0's product makes words 2 and 3; word 0 becomes high ^ k0
  // (all lanes) and word 1 becomes 0 (it stays implicit until round 2 sets it).
  const __m512i key1_round1 = _mm512_set1_epi32(static_cast<int>(keys->k1[0]));
  const __m512i first_product =
      _mm512_set1_epi64(static_cast<long long>(static_cast<uint64_t>(static_cast<uint32_t>(group0)) * kPhiloxRoundA));
  for (int b = 0; b < kBatches; ++b) {
    const __m512i product1 = _mm512_add_epi64(first_product, _mm512_load_si512(kRound1Steps.product[b]));
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

  for (int round = 2; round < kPhiloxRounds - 2; ++round) {
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

  // Round 9 writes pairs: the products' halves swapped put the high half under the low dword, where the XORs go
  // (masked to the even dwords), and the low half, the new word 1 (or 3), above it. So pair01 holds (word 0,
  // word 1) and pair23 (word 2, word 3) in each lane; words 0 and 2 are where round 10's multiplies read them.
  const __m512i key0_round9 = _mm512_set1_epi32(static_cast<int>(keys->k0[kPhiloxRounds - 2]));
  const __m512i key1_round9 = _mm512_set1_epi32(static_cast<int>(keys->k1[kPhiloxRounds - 2]));
  __m512i* pair01 = c0;
  __m512i* pair23 = c2;
  for (int b = 0; b < kBatches; ++b) {
    const __m512i product0 = _mm512_mul_epu32(c2[b], round_b);
    const __m512i product1 = _mm512_mul_epu32(c0[b], round_a);
    pair01[b] = _mm512_mask_ternarylogic_epi32(swap_halves(product0), kEvenDwords, c1[b], key0_round9, kXor3);
    pair23[b] = _mm512_mask_ternarylogic_epi32(swap_halves(product1), kEvenDwords, c3[b], key1_round9, kXor3);
  }

  // Round 10 XORs in place: a product has its low half (the new word 1 or 3) in the even dword and its high half
  // in the odd dword, where the pair's word 1 (or 3) is; the masked XOR leaves (word 1, word 0) and (word 3,
  // word 2) in each lane of words10 and words32. Dword 2j + 1 of words10 is word 0 of group j, dword 2j its word
  // 1, and the same for words 3 and 2 in words32 (sources 16 + 2j and 16 + 2j + 1 of the permutes).
  const __m512i key0_round10 = _mm512_set1_epi32(static_cast<int>(keys->k0[kPhiloxRounds - 1]));
  const __m512i key1_round10 = _mm512_set1_epi32(static_cast<int>(keys->k1[kPhiloxRounds - 1]));
  const __m512i groups_0_to_3 = _mm512_setr_epi32(1, 0, 17, 16, 3, 2, 19, 18, 5, 4, 21, 20, 7, 6, 23, 22);
  const __m512i groups_4_to_7 = _mm512_setr_epi32(9, 8, 25, 24, 11, 10, 27, 26, 13, 12, 29, 28, 15, 14, 31, 30);
  for (int b = 0; b < kBatches; ++b) {
    const __m512i words10 = _mm512_mask_ternarylogic_epi32(_mm512_mul_epu32(pair23[b], round_b), kOddDwords,
                                                           pair01[b], key0_round10, kXor3);
    const __m512i words32 = _mm512_mask_ternarylogic_epi32(_mm512_mul_epu32(pair01[b], round_a), kOddDwords,
                                                           pair23[b], key1_round10, kXor3);
    _mm512_storeu_si512(out + 32 * b, _mm512_permutex2var_epi32(words10, groups_0_to_3, words32));
    _mm512_storeu_si512(out + 32 * b + 16, _mm512_permutex2var_epi32(words10, groups_4_to_7, words32));
  }
}

}  // namespace cpu
}  // namespace fused_dropout
