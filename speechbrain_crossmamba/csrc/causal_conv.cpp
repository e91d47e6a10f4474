// The "cpu" backend of causal_conv1d: a causal depthwise conv over time, with an optional
// fused SiLU, forward and backward (mamba-ssm's causal_conv1d on GPU has no CPU kernel).
//
//   pre_t = bias + Σ_j w[j] · xp[t + j],   xp = [history (k - 1 frames, zero if none), x]
//   out_t = silu(pre_t) if silu else pre_t
//
// Layout: channel-last. Element (b, t, c) of x is at x[b*sb + t*st + c] (unit channel
// stride, any batch and time strides: the x half of in_proj's output is read in place);
// out and dx are (b, L, d); the weight is given transposed, (k, d); history is (b, k - 1, d).
// One work item is a (batch, block of time steps); the inner loops run over channels and
// vectorise. Weight and bias gradients are summed per work item (deterministic) and the
// caller adds the partials.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "fast_math.h"
#include "kernels.h"

namespace {

constexpr int64_t TC = 32;  // time steps per work item

struct Conv {
  const float *x, *wT, *bias, *hist;
  int64_t sb, st, b, L, d, k;
  bool silu;
  int64_t tblocks() const { return (L + TC - 1) / TC; }
  // Input frame s of batch bi (s < 0: the history), as a pointer to its d channels.
  const float* frame(int64_t bi, int64_t s) const {
    if (s >= 0) return x + bi * sb + s * st;
    return hist ? hist + (bi * (k - 1) + (k - 1) + s) * d : nullptr;
  }
  void pre(int64_t bi, int64_t t, float* out) const {
    for (int64_t c = 0; c < d; ++c) out[c] = bias ? bias[c] : 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      const float* src = frame(bi, t - (k - 1) + j);
      if (!src) continue;
      const float* wj = wT + j * d;
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) out[c] += wj[c] * src[c];
    }
  }
};

Conv make(const at::Tensor& x, const at::Tensor& wT, const c10::optional<at::Tensor>& bias,
          const c10::optional<at::Tensor>& history, bool silu) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 3 && x.stride(2) == 1,
              "causal_conv1d_cpu: x must be a float32 (b, L, d) CPU tensor with unit channel stride");
  TORCH_CHECK(wT.is_contiguous() && wT.scalar_type() == at::kFloat && wT.dim() == 2 && wT.size(1) == x.size(2),
              "causal_conv1d_cpu: the weight must be a contiguous float32 (k, d) tensor");
  Conv c{x.data_ptr<float>(), wT.data_ptr<float>(), optional_ptr(bias), optional_ptr(history), x.stride(0), x.stride(1),
         x.size(0), x.size(1), x.size(2), wT.size(0), silu};
  if (c.hist)
    TORCH_CHECK(history->is_contiguous() && history->size(1) == c.k - 1, "history must be (b, k - 1, d)");
  return c;
}

}  // namespace

std::vector<at::Tensor> conv_fwd(const at::Tensor& x, const at::Tensor& wT, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& history, bool silu) {
  const Conv cv = make(x, wT, bias, history, silu);
  auto out = at::empty({cv.b, cv.L, cv.d}, x.options());
  float* po = out.data_ptr<float>();
  at::parallel_for(0, cv.b * cv.tblocks(), 1, [&](int64_t i0, int64_t i1) {
    const DenormalsAreZero ftz;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t bi = i / cv.tblocks(), t0 = (i % cv.tblocks()) * TC;
      for (int64_t t = t0; t < std::min(cv.L, t0 + TC); ++t) {
        float* o = po + (bi * cv.L + t) * cv.d;
        cv.pre(bi, t, o);
        if (cv.silu) {
#pragma omp simd
          for (int64_t c = 0; c < cv.d; ++c) o[c] = ::silu(o[c]);
        }
      }
    }
  });
  return {out};
}

// Returns dx (b, L, d), dw_part (items, k, d), dbias_part (items, d), dhistory (b, k - 1, d).
std::vector<at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& wT, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& history, bool silu, const at::Tensor& dout) {
  const Conv cv = make(x, wT, bias, history, silu);
  TORCH_CHECK(dout.is_contiguous() && dout.sizes() == at::IntArrayRef({cv.b, cv.L, cv.d}), "dout (b, L, d)");
  const int64_t items = cv.b * cv.tblocks(), P = cv.k - 1, d = cv.d;
  auto o = x.options();
  auto gpre = silu ? at::empty({cv.b, cv.L, d}, o) : dout;  // d out / d pre
  auto dx = at::empty({cv.b, cv.L, d}, o), dhist = at::zeros({cv.b, P, d}, o);
  auto dw_part = at::zeros({items, cv.k, d}, o), db_part = at::zeros({items, d}, o);
  const float* go = dout.data_ptr<float>();
  float* gp = gpre.data_ptr<float>();
  if (silu) {
    at::parallel_for(0, items, 1, [&](int64_t i0, int64_t i1) {
      const DenormalsAreZero ftz;
      std::vector<float> pre(d);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t bi = i / cv.tblocks(), t0 = (i % cv.tblocks()) * TC;
        for (int64_t t = t0; t < std::min(cv.L, t0 + TC); ++t) {
          cv.pre(bi, t, pre.data());
          const float* g = go + (bi * cv.L + t) * d;
          float* dp = gp + (bi * cv.L + t) * d;
#pragma omp simd
          for (int64_t c = 0; c < d; ++c) {
            const float s = sigmoid(pre[c]);
            dp[c] = g[c] * s * (1.0f + pre[c] * (1.0f - s));
          }
        }
      }
    });
  }
  const float* gpc = gp;
  float *pdx = dx.data_ptr<float>(), *pdh = dhist.data_ptr<float>();
  float *pdw = dw_part.data_ptr<float>(), *pdb = db_part.data_ptr<float>();
  at::parallel_for(0, items, 1, [&](int64_t i0, int64_t i1) {
    const DenormalsAreZero ftz;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t bi = i / cv.tblocks(), t0 = (i % cv.tblocks()) * TC, t1 = std::min(cv.L, t0 + TC);
      float *dw = pdw + i * cv.k * d, *db = pdb + i * d;
      for (int64_t t = t0; t < t1; ++t) {  // weight and bias: Σ_t dpre_t · xp_{t+j}
        const float* dp = gpc + (bi * cv.L + t) * d;
#pragma omp simd
        for (int64_t c = 0; c < d; ++c) db[c] += dp[c];
        for (int64_t j = 0; j < cv.k; ++j) {
          const float* src = cv.frame(bi, t - P + j);
          if (!src) continue;
          float* dwj = dw + j * d;
#pragma omp simd
          for (int64_t c = 0; c < d; ++c) dwj[c] += dp[c] * src[c];
        }
      }
      // inputs: dxp_q = Σ_j w_j · dpre_{q - j}, for the x frames s = q - P in [t0, t1), and
      // for the history frames (q < P) in the first block
      for (int64_t q = (t0 == 0 ? 0 : t0 + P); q < t1 + P; ++q) {
        float* dst = q >= P ? pdx + (bi * cv.L + q - P) * d : pdh + (bi * P + q) * d;
        for (int64_t c = 0; c < d; ++c) dst[c] = 0.0f;
        for (int64_t j = 0; j < cv.k; ++j) {
          const int64_t t = q - j;
          if (t < 0 || t >= cv.L) continue;
          const float *wj = cv.wT + j * d, *dp = gpc + (bi * cv.L + t) * d;
#pragma omp simd
          for (int64_t c = 0; c < d; ++c) dst[c] += wj[c] * dp[c];
        }
      }
    }
  });
  return {dx, dw_part, db_part, dhist};
}
