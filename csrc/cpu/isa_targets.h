// The instruction sets of the CPU kernels' x86 variants. cpu_kernels.cpp compiles each variant between
// FD_BEGIN_ISA(FD_ISA_...) and FD_END_ISA, and benchmarks/cpu_floor compiles its Philox harness the same way, so
// that what the harness measures is the code the extension runs.
#pragma once

#define FD_ISA_AVX2 "avx2,fma,f16c"
// AVX-512 as Skylake-SP has it (F, BW, VL, DQ); 512-bit vectors preferred, which GCC would not pick by itself.
#define FD_ISA_AVX512 "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,prefer-vector-width=512"

#define FD_PRAGMA(text) _Pragma(#text)
#define FD_PRAGMA_EXPANDED(text) FD_PRAGMA(text)  // expands the macros in text first (# alone would not)
#define FD_BEGIN_ISA(isa) FD_PRAGMA(GCC push_options) FD_PRAGMA_EXPANDED(GCC target(isa))
#define FD_END_ISA FD_PRAGMA(GCC pop_options)
