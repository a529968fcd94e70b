// The compute floor of the CPU kernels' vector Philox on the machine at hand. Built once per variant by
// benchmarks/cpu_floor (with -DFLOOR_AVX512 for the AVX-512 one) and run there; prints one JSON object.
//
// What it measures, each a best of repetitions:
//  - the core clock: a chain of dependent 64-bit adds (one cycle each on every x86 core of this project);
//  - the vector pipes: the throughput of the Philox round's instruction classes alone (multiply, shift, dword
//    shuffle, XOR) and of one round's exact mix (AVX2: 2 vpmuludq, 2 vpsrlq, 4 vpxor; AVX-512: 2 vpmuludq,
//    2 vpshufd, 2 vpternlogd), each over 14 independent chains so that latency does not count, and the latency of
//    a multiply, a shift and an XOR (one dependent chain);
//  - the variant's Philox (philox20_avx2 / philox32_avx512) alone, in a loop over an L2-resident buffer, after
//    checking every word of the first steps against the scalar philox.h.
// The instruction counts per word come from the disassembly of philox_step (benchmarks/cpu_floor/disasm.py).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "cpu/isa_targets.h"
#include "philox.h"

// The variant: its target, its Philox and that Philox's groups per call, and its vector registers' name.
#if defined(FLOOR_AVX512)
#define FLOOR_VARIANT "avx512"
#define FLOOR_TARGET FD_ISA_AVX512
#define FLOOR_PHILOX_HEADER "cpu/philox_avx512.h"
#define FLOOR_PHILOX philox32_avx512
#define FLOOR_GROUPS_PER_CALL kAvx512PhiloxGroups
#define FLOOR_REG "%%zmm"
#define FLOOR_XOR "vpxord "  // AVX-512 has no VEX vpxor on zmm
#else
#define FLOOR_VARIANT "avx2"
#define FLOOR_TARGET FD_ISA_AVX2
#define FLOOR_PHILOX_HEADER "cpu/philox_avx2.h"
#define FLOOR_PHILOX philox20_avx2
#define FLOOR_GROUPS_PER_CALL kAvx2PhiloxGroups
#define FLOOR_REG "%%ymm"
#define FLOOR_XOR "vpxor "
#endif

// The variant's Philox, compiled as cpu_kernels.cpp compiles it (the same target pragma and, from
// benchmarks/cpu_floor, the same flags). One call is kept out of line, with everything it calls inlined into it
// (flatten), so that disasm.py finds exactly its instructions.
FD_BEGIN_ISA(FLOOR_TARGET)
#include FLOOR_PHILOX_HEADER
extern "C" __attribute__((noinline, flatten)) void philox_step(const fused_dropout::PhiloxKeySchedule& keys,
                                                               uint64_t group0, uint32_t* out) {
  fused_dropout::cpu::FLOOR_PHILOX(keys, group0, out);
}
FD_END_ISA
constexpr int64_t kGroupsPerCall = fused_dropout::cpu::FLOOR_GROUPS_PER_CALL;

using Clock = std::chrono::steady_clock;

template <typename Body>
double best_ns(int repetitions, Body&& body) {
  double best = 1e300;
  for (int r = 0; r < repetitions; ++r) {
    const auto t0 = Clock::now();
    body();
    const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    if (ns < best) best = ns;
  }
  return best;
}

#define R8(x) x x x x x x x x
#define CHAINS(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11) op(12) op(13)
#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
                 "xmm12", "xmm13"
#define MUL(i) "vpmuludq " FLOOR_REG "15," FLOOR_REG #i "," FLOOR_REG #i "\n"
#define SHIFT(i) "vpsrlq $32," FLOOR_REG #i "," FLOOR_REG #i "\n"
#define SHUFFLE(i) "vpshufd $0xb1," FLOOR_REG #i "," FLOOR_REG #i "\n"
#define XOR(i) FLOOR_XOR FLOOR_REG "15," FLOOR_REG #i "," FLOOR_REG #i "\n"
#define XOR3(i) "vpternlogd $0x96," FLOOR_REG "15," FLOOR_REG "14," FLOOR_REG #i "\n"
#if defined(FLOOR_AVX512)
// One round per 8 groups, scaled up: 2 multiplies, 2 dword shuffles, 2 three-way XORs (a 14-chain cycle).
#define ROUND_MIX                                                                                              \
  MUL(0) MUL(1) SHUFFLE(2) SHUFFLE(3) XOR3(4) XOR3(5) MUL(6) MUL(7) SHUFFLE(8) SHUFFLE(9) XOR3(10) XOR3(11) \
      MUL(12) MUL(13) SHUFFLE(0) SHUFFLE(1) XOR3(2) XOR3(3) MUL(4) MUL(5) SHUFFLE(6) SHUFFLE(7) XOR3(8) XOR3(9) \
          MUL(10) MUL(11) SHUFFLE(12) SHUFFLE(13) XOR3(0) XOR3(1) MUL(2) MUL(3) SHUFFLE(4) SHUFFLE(5) XOR3(6) XOR3(7) \
              MUL(8) MUL(9) SHUFFLE(10) SHUFFLE(11) XOR3(12) XOR3(13)
constexpr int kRoundMixOps = 42;
#else
// One round per 4 groups, scaled up: 2 multiplies, 2 shifts, 4 XORs (a 14-chain cycle).
#define ROUND_MIX                                                                                           \
  MUL(0) MUL(1) SHIFT(2) SHIFT(3) XOR(4) XOR(5) XOR(6) XOR(7) MUL(8) MUL(9) SHIFT(10) SHIFT(11) XOR(12)    \
      XOR(13) XOR(0) XOR(1) MUL(2) MUL(3) SHIFT(4) SHIFT(5) XOR(6) XOR(7) XOR(8) XOR(9) MUL(10) MUL(11)   \
          SHIFT(12) SHIFT(13) XOR(0) XOR(1) XOR(2) XOR(3) MUL(4) MUL(5) SHIFT(6) SHIFT(7) XOR(8) XOR(9)   \
              XOR(10) XOR(11) MUL(12) MUL(13) SHIFT(0) SHIFT(1) XOR(2) XOR(3) XOR(4) XOR(5) MUL(6) MUL(7) \
                  SHIFT(8) SHIFT(9) XOR(10) XOR(11) XOR(12) XOR(13)
constexpr int kRoundMixOps = 56;
#endif

constexpr long kLoops = 200000;
constexpr int kRepetitions = 7;

// Nanoseconds per instruction of an asm block of `ops` instructions repeated 8 times per loop.
#define THROUGHPUT(block, ops)                                                                       \
  best_ns(kRepetitions, [] {                                                                         \
    for (long i = 0; i < kLoops; ++i) asm volatile(R8(block)::: CLOBBERS);                           \
  }) / (8.0 * (ops) * kLoops)

int main(int argc, char** argv) {
  const long philox_steps = argc > 1 ? std::atol(argv[1]) : 200000;

  const double add_ns = best_ns(kRepetitions, [] {
    for (long i = 0; i < kLoops; ++i) asm volatile(R8(R8("add $1, %%rax\n")) ::: "rax");
  }) / (64.0 * kLoops);
  const double ghz = 1.0 / add_ns;

  const double mul_ns = THROUGHPUT(CHAINS(MUL), 14);
  const double shift_ns = THROUGHPUT(CHAINS(SHIFT), 14);
  const double shuffle_ns = THROUGHPUT(CHAINS(SHUFFLE), 14);
  const double xor_ns = THROUGHPUT(CHAINS(XOR), 14);
  const double mix_ns = THROUGHPUT(ROUND_MIX, kRoundMixOps);
  // Latencies: one chain (register 0) of dependent instructions.
  const double mul_latency_ns = THROUGHPUT(MUL(0) MUL(0) MUL(0) MUL(0) MUL(0) MUL(0) MUL(0), 7);
  const double shift_latency_ns = THROUGHPUT(SHIFT(0) SHIFT(0) SHIFT(0) SHIFT(0) SHIFT(0) SHIFT(0) SHIFT(0), 7);
  const double xor_latency_ns = THROUGHPUT(XOR(0) XOR(0) XOR(0) XOR(0) XOR(0) XOR(0) XOR(0), 7);

  const uint64_t seed = 0x0123456789ABCDEFull;
  const fused_dropout::PhiloxKeySchedule keys(seed);
  constexpr int64_t kBufferGroups = 8192;  // 128 KiB of words: the loop stays in L2
  constexpr int64_t kCalls = kBufferGroups / kGroupsPerCall;
  std::vector<uint32_t> words(4 * kCalls * kGroupsPerCall);
  long mismatches = 0;
  const uint64_t check_first = 0xFFFF0000ull;  // a high word of 0 and groups well past 2^31
  for (int64_t c = 0; c < kCalls; ++c) {
    philox_step(keys, check_first + c * kGroupsPerCall, words.data() + 4 * c * kGroupsPerCall);
  }
  for (int64_t g = 0; g < kCalls * kGroupsPerCall; ++g) {
    const fused_dropout::Philox4 ref = fused_dropout::philox_group(seed, check_first + g);
    for (int w = 0; w < 4; ++w) mismatches += words[4 * g + w] != ref.r[w];
  }

  const long passes = philox_steps / kCalls > 0 ? philox_steps / kCalls : 1;
  const double philox_total_ns = best_ns(kRepetitions, [&] {
    for (long pass = 0; pass < passes; ++pass) {
      for (int64_t c = 0; c < kCalls; ++c) {
        philox_step(keys, static_cast<uint64_t>(c * kGroupsPerCall), words.data() + 4 * c * kGroupsPerCall);
      }
    }
  });
  const double philox_ns_per_word = philox_total_ns / (4.0 * kGroupsPerCall * kCalls * passes);

  std::printf(
      "{\"variant\": \"%s\", \"groups_per_call\": %lld, \"ghz\": %.4f, \"ns_per_op\": {\"multiply\": %.5f, "
      "\"shift\": %.5f, \"shuffle\": %.5f, \"xor\": %.5f, \"round_mix\": %.5f}, \"latency_cycles\": "
      "{\"multiply\": %.2f, \"shift\": %.2f, \"xor\": %.2f}, \"words_checked\": %lld, \"mismatches\": %ld, "
      "\"philox_ns_per_word\": %.5f}\n",
      FLOOR_VARIANT, static_cast<long long>(kGroupsPerCall), ghz, mul_ns, shift_ns, shuffle_ns, xor_ns, mix_ns,
      mul_latency_ns * ghz, shift_latency_ns * ghz, xor_latency_ns * ghz,
      static_cast<long long>(4 * kCalls * kGroupsPerCall), mismatches, philox_ns_per_word);
  return mismatches == 0 ? 0 : 1;
}
