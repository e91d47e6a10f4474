// Small inline float functions that vectorise inside `omp simd` loops without a vector call.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

// Flush-to-zero and denormals-are-zero on the calling thread while in scope (restored after).
// A scan state that decays below FLT_MIN (exp(delta * A) reaches 1.6e-38 here) otherwise runs
// on the CPU's microcoded denormal path, tens of times slower per operation. Measured: a trained
// Mamba-TSE's inference on test mixtures ran 2.2x slower without flushing (1 thread); with this
// guard, flushing globally as well changes nothing. Its training epochs in
// benchmarks/paper_table.py ran 4.2x faster with the guard (1.3 against 5.6 min), same result.
// Values below 1.2e-38 become 0, which is far below every tolerance of the kernels' tests.
struct DenormalsAreZero {
#if defined(__SSE__)
  unsigned int saved;
  DenormalsAreZero() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }  // FTZ | DAZ
  ~DenormalsAreZero() { _mm_setcsr(saved); }
#endif
};

// exp(x) for x in [-87, 88] (clamped): Cephes' expf coefficients, range reduction by ln 2 in two
// parts and a degree-5 polynomial, about 1 ulp.
inline float fast_exp(float x) {
  x = std::fmin(std::fmax(x, -87.0f), 88.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  // 1 + r + r^2 (c0 + c1 r + c2 r^2 + c3 r^3 + c4 r^4 + c5 r^5), evaluated by Estrin's scheme:
  // a shorter dependency chain than Horner's, so more exps overlap in flight.
  const float r2 = r * r, r4 = r2 * r2;
  const float p01 = 5.0000001201e-1f + 1.6666665459e-1f * r;
  const float p23 = 4.1665795894e-2f + 8.3334519073e-3f * r;
  const float p45 = 1.3981999507e-3f + 1.9875691500e-4f * r;
  const float p = (p01 + p23 * r2) + p45 * r4;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return (p * r2 + r + 1.0f) * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

inline float silu(float x) { return x * sigmoid(x); }

// softplus with torch's threshold (beta 1, threshold 20).
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(fast_exp(x)); }

// out[i] = Σ_c v[i][c] for eight 8-lane rows: a horizontal-add tree (AVX) instead of eight
// separate horizontal sums.
inline void sum_rows8(const float (*v)[8], float* out) {
#if defined(__AVX__)
  const __m256 a0 = _mm256_hadd_ps(_mm256_loadu_ps(v[0]), _mm256_loadu_ps(v[1]));
  const __m256 a1 = _mm256_hadd_ps(_mm256_loadu_ps(v[2]), _mm256_loadu_ps(v[3]));
  const __m256 a2 = _mm256_hadd_ps(_mm256_loadu_ps(v[4]), _mm256_loadu_ps(v[5]));
  const __m256 a3 = _mm256_hadd_ps(_mm256_loadu_ps(v[6]), _mm256_loadu_ps(v[7]));
  const __m256 b0 = _mm256_hadd_ps(a0, a1), b1 = _mm256_hadd_ps(a2, a3);
  const __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(b0, b1, 0x20), _mm256_permute2f128_ps(b0, b1, 0x31));
  _mm256_storeu_ps(out, sum);
#else
  for (int i = 0; i < 8; ++i) {
    float s = 0.0f;
    for (int c = 0; c < 8; ++c) s += v[i][c];
    out[i] = s;
  }
#endif
}
