// Conversions between the 16-bit element types and float32 over whole arrays, so the element loops run on float32
// buffers and never convert one element at a time. Included by cpu_kernels_impl.h once per variant (no include
// guard), so each variant compiles them for its own ISA:
//  - bfloat16 by integer arithmetic (widen: a shift; narrow: round to nearest even by adding 0x7FFF plus the lowest
//    kept bit), plain loops that every variant vectorises at its own width;
//  - float16 by F16C (vcvtph2ps / vcvtps2ph) in the AVX2 and AVX-512 variants, c10's conversion in the generic one.
// widen() is exact. narrow() rounds to nearest even, and expects its input as the element loops write it, through
// to_element<float>: a NaN is already float32's canonical NaN, which both roundings turn into the 16-bit canonical
// NaN (0x7FC0 bfloat16, 0x7E00 float16) by themselves. So narrow(to_element<float>(v)) has exactly the bits of
// to_element<scalar_t>(v), with no NaN test of its own.
//
// Expects FD_CPU_HALF_F16C_AVX2 or FD_CPU_HALF_F16C_AVX512 (or neither) to be defined, and <immintrin.h> included
// when one is.

inline void widen(const c10::BFloat16* __restrict__ in, float* __restrict__ out, int64_t n) {
  const uint16_t* __restrict__ bits = reinterpret_cast<const uint16_t*>(in);
  for (int64_t k = 0; k < n; ++k) {
    const uint32_t wide = static_cast<uint32_t>(bits[k]) << 16;
    memcpy(out + k, &wide, sizeof(wide));
  }
}

inline void narrow(const float* __restrict__ in, c10::BFloat16* __restrict__ out, int64_t n) {
  uint16_t* __restrict__ bits = reinterpret_cast<uint16_t*>(out);
  for (int64_t k = 0; k < n; ++k) {
    uint32_t u;
    memcpy(&u, in + k, sizeof(u));
    // Round to nearest even: a carry out of the low half rounds up, ties go to the even upper half. Overflow
    // carries into the exponent and gives infinity, as it must; the canonical NaN 0x7FC00000 gives 0x7FC0.
    bits[k] = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
}

inline void widen(const c10::Half* __restrict__ in, float* __restrict__ out, int64_t n) {
  int64_t k = 0;
#if defined(FD_CPU_HALF_F16C_AVX512)
  for (; k + 16 <= n; k += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + k));
    _mm512_storeu_ps(out + k, _mm512_cvtph_ps(h));
  }
#elif defined(FD_CPU_HALF_F16C_AVX2)
  for (; k + 8 <= n; k += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + k));
    _mm256_storeu_ps(out + k, _mm256_cvtph_ps(h));
  }
#endif
  for (; k < n; ++k) out[k] = static_cast<float>(in[k]);
}

inline void narrow(const float* __restrict__ in, c10::Half* __restrict__ out, int64_t n) {
  int64_t k = 0;
#if defined(FD_CPU_HALF_F16C_AVX512) || defined(FD_CPU_HALF_F16C_AVX2)
  constexpr int kNearestEven = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
#endif
#if defined(FD_CPU_HALF_F16C_AVX512)
  for (; k + 16 <= n; k += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), _mm512_cvtps_ph(_mm512_loadu_ps(in + k), kNearestEven));
  }
#elif defined(FD_CPU_HALF_F16C_AVX2)
  for (; k + 8 <= n; k += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), _mm256_cvtps_ph(_mm256_loadu_ps(in + k), kNearestEven));
  }
#endif
  for (; k < n; ++k) out[k] = to_element<c10::Half>(in[k]);
}
