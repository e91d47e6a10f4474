// The "cpu" backend of causal_conv1d: a causal depthwise conv over time, with an optional
// fused SiLU, forward and backward (mamba-ssm's causal_conv1d on GPU has no CPU kernel).
//
//   pre_t = bias + Σ_j w[j] · xp[t + j],   xp = [history (k - 1 frames, zero if none), x]
//   out_t = silu(pre_t) if silu else pre_t
//
// Layouts (fp32, contiguous): x, out (b, d, L); w (d, k); bias (d); history (b, d, k - 1).
// One work item is a (batch, channel) row; the inner loops run over time and vectorise.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

struct Conv {
  const float *x, *w, *bias, *hist;
  int64_t b, d, L, k;
  bool silu;
  // Fills xp (L + k - 1) with the row's history and input, and pre (L) with the conv.
  void row(int64_t r, float* xp, float* pre) const {
    const int64_t di = r % d, P = k - 1;
    for (int64_t j = 0; j < P; ++j) xp[j] = hist ? hist[r * P + j] : 0.0f;
    const float* xr = x + r * L;
    for (int64_t t = 0; t < L; ++t) xp[P + t] = xr[t];
    const float* wr = w + di * k;
    const float b0 = bias ? bias[di] : 0.0f;
    for (int64_t t = 0; t < L; ++t) pre[t] = b0;
    for (int64_t j = 0; j < k; ++j) {
      const float wj = wr[j];
      const float* src = xp + j;
#pragma omp simd
      for (int64_t t = 0; t < L; ++t) pre[t] += wj * src[t];
    }
  }
};

const float* opt(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<float>() : nullptr;
}

Conv make(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
          const c10::optional<at::Tensor>& history, bool silu) {
  for (const at::Tensor* t : {&x, &w})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous(),
                "causal_conv1d_cpu: inputs must be contiguous float32 CPU tensors");
  TORCH_CHECK(x.dim() == 3 && w.dim() == 2 && w.size(0) == x.size(1), "x (b, d, L) and w (d, k) expected");
  Conv c{x.data_ptr<float>(), w.data_ptr<float>(), opt(bias), opt(history),
         x.size(0), x.size(1), x.size(2), w.size(1), silu};
  if (c.hist) TORCH_CHECK(history->size(2) == c.k - 1, "history must hold k - 1 frames");
  return c;
}

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

int64_t grain(const Conv& c) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, c.L)); }

}  // namespace

std::vector<at::Tensor> conv_fwd(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& history, bool silu) {
  const Conv c = make(x, w, bias, history, silu);
  auto out = at::empty_like(x);
  float* po = out.data_ptr<float>();
  at::parallel_for(0, c.b * c.d, grain(c), [&](int64_t r0, int64_t r1) {
    std::vector<float> xp(c.L + c.k - 1);
    for (int64_t r = r0; r < r1; ++r) {
      float* pre = po + r * c.L;
      c.row(r, xp.data(), pre);
      if (c.silu) {
#pragma omp simd
        for (int64_t t = 0; t < c.L; ++t) pre[t] = pre[t] * sigmoid(pre[t]);
      }
    }
  });
  return {out};
}

// Returns dx (b, d, L), dw_rows (b, d, k), dbias_rows (b, d), dhistory (b, d, k - 1).
std::vector<at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& history, bool silu, const at::Tensor& dout) {
  const Conv c = make(x, w, bias, history, silu);
  TORCH_CHECK(dout.sizes() == x.sizes() && dout.is_contiguous() && dout.scalar_type() == at::kFloat,
              "dout must be a contiguous float32 tensor like x");
  const int64_t P = c.k - 1;
  auto dx = at::empty_like(x);
  auto dw_rows = at::empty({c.b, c.d, c.k}, x.options()), db_rows = at::empty({c.b, c.d}, x.options());
  auto dhist = at::empty({c.b, c.d, P}, x.options());
  const float* go = dout.data_ptr<float>();
  float *pdx = dx.data_ptr<float>(), *pdw = dw_rows.data_ptr<float>(), *pdb = db_rows.data_ptr<float>();
  float* pdh = dhist.data_ptr<float>();
  at::parallel_for(0, c.b * c.d, grain(c), [&](int64_t r0, int64_t r1) {
    std::vector<float> xp(c.L + P), gpre(c.L), dxp(c.L + P);
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = go + r * c.L;
      float* gp = gpre.data();
      if (c.silu) {
        c.row(r, xp.data(), gp);
#pragma omp simd
        for (int64_t t = 0; t < c.L; ++t) {
          const float s = sigmoid(gp[t]);
          gp[t] = g[t] * s * (1.0f + gp[t] * (1.0f - s));
        }
      } else {
        const float* xr = c.x + r * c.L;
        for (int64_t j = 0; j < P; ++j) xp[j] = c.hist ? c.hist[r * P + j] : 0.0f;
        for (int64_t t = 0; t < c.L; ++t) xp[P + t] = xr[t], gp[t] = g[t];
      }
      const float* wr = c.w + (r % c.d) * c.k;
      float db = 0.0f;
      for (int64_t t = 0; t < c.L; ++t) db += gp[t];
      for (int64_t p = 0; p < c.L + P; ++p) dxp[p] = 0.0f;
      for (int64_t j = 0; j < c.k; ++j) {
        const float wj = wr[j];
        const float* src = xp.data() + j;
        float* dst = dxp.data() + j;
        float dw = 0.0f;
#pragma omp simd reduction(+ : dw)
        for (int64_t t = 0; t < c.L; ++t) {
          dw += gp[t] * src[t];
          dst[t] += wj * gp[t];
        }
        pdw[r * c.k + j] = dw;
      }
      pdb[r] = db;
      for (int64_t j = 0; j < P; ++j) pdh[r * P + j] = dxp[j];
      for (int64_t t = 0; t < c.L; ++t) pdx[r * c.L + t] = dxp[P + t];
    }
  });
  return {dx, dw_rows, db_rows, dhist};
}
