// The "cpu" backend of selective_scan: a fused forward and backward of Mamba's selective scan.
//
// Layout: channel-last, as a Mamba layer produces its tensors. Element (b, t, c) of u, delta
// and z is at p[b*sb + t*st + c] (unit channel stride, any batch and time strides, so the
// x and z halves of in_proj's output are read in place); out, du, ddelta, dz are (b, L, d).
// B and C are (b, L, g, n) with any batch, time and group strides; A is given transposed,
// (n, d); D and delta_bias are (d); the initial and last states are (b, d, n).
//
// One work item is W = 8 consecutive channels of one (batch, group): the recurrence runs
// on 8 lanes at once, one vector per state index k, with exp(Δ·A) inline (no vector call,
// no spills) and no horizontal sum in the forward. Backward recomputes the states in time
// blocks of T steps from the block-boundary states (kept per item: L/T · n · W floats), so
// no (b, d, L, n) tensor is ever allocated and training memory stays O(b·d·L):
//   g_t = C_t·dy_t + a_{t+1}·g_{t+1},   d log a_t = g_t·a_t·h_{t-1}.
// dB and dC sum over the channels of a group: each chunk of work items accumulates into its
// own partial buffer, and the caller sums the partials (no atomics). Parallelism is ATen's
// (at::parallel_for), so torch.set_num_threads applies.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fast_math.h"
#include "kernels.h"

namespace {

constexpr int W = 8;                    // lanes: channels per work item (sum_rows8 assumes 8)
constexpr int64_t T = 256;              // time block of the gather and of the backward recomputation
constexpr float kLogDecayMin = -80.0f;  // as LOG_DECAY_MIN in the torch backend

struct View {  // a channel-last (b, t, c) operand: p[b*sb + t*st + c]
  const float* p;
  int64_t sb, st;
  const float* at(int64_t b, int64_t t) const { return p + b * sb + t * st; }
};

struct Problem {
  View u, delta, z, B, C;
  int64_t Bsg, Csg;  // group strides of B and C
  const float *At, *D, *bias, *h0;
  bool softplus;
  int64_t b, d, L, n, g;
  int64_t blocks() const { return (d / g + W - 1) / W; }  // work items per (batch, group)
  int64_t items() const { return b * g * blocks(); }
};

struct Item {  // work item i: batch bi, group gi, channels [c0, c0 + w)
  int64_t bi, gi, c0, w;
  Item(const Problem& p, int64_t i) {
    const int64_t nb = p.blocks(), blk = i % nb;
    gi = (i / nb) % p.g;
    bi = i / (nb * p.g);
    c0 = gi * (p.d / p.g) + blk * W;
    w = std::min<int64_t>(W, (gi + 1) * (p.d / p.g) - c0);
  }
};

inline void load(const float* src, int64_t w, float* dst) {
  if (w == W) {
#pragma omp simd
    for (int c = 0; c < W; ++c) dst[c] = src[c];
  } else {
    for (int c = 0; c < W; ++c) dst[c] = c < w ? src[c] : 0.0f;
  }
}

inline void store(const float* src, int64_t w, float* dst) {
  if (w == W) {
#pragma omp simd
    for (int c = 0; c < W; ++c) dst[c] = src[c];
  } else {
    for (int c = 0; c < w; ++c) dst[c] = src[c];
  }
}

// Per-item constants: A^T lanes, D, bias.
struct Lanes {
  alignas(32) float A[256][W];
  alignas(32) float D[W], bias[W];
  Lanes(const Problem& p, const Item& it) {
    for (int64_t k = 0; k < p.n; ++k) load(p.At + k * p.d + it.c0, it.w, A[k]);
    for (int c = 0; c < W; ++c) {
      D[c] = p.D && c < it.w ? p.D[it.c0 + c] : 0.0f;
      bias[c] = p.bias && c < it.w ? p.bias[it.c0 + c] : 0.0f;
    }
  }
};

// One time block of one item, gathered into lane buffers [t - t0][c]. The elementwise work
// (softplus, gates, sigmoids) runs as flat loops over the T·W buffer elements, which
// vectorise reliably; only the recurrence runs step by step.
struct Block {
  alignas(32) float u[T][W], pre[T][W], dt[T][W], z[T][W], y[T][W];
  int64_t t0, t1;
  void gather(const Problem& p, const Item& it, const Lanes& ln, int64_t t0_) {
    t0 = t0_;
    t1 = std::min(p.L, t0 + T);
    for (int64_t t = t0; t < t1; ++t) {
      load(p.u.at(it.bi, t) + it.c0, it.w, u[t - t0]);
      load(p.delta.at(it.bi, t) + it.c0, it.w, pre[t - t0]);
      if (p.z.p) load(p.z.at(it.bi, t) + it.c0, it.w, z[t - t0]);
      for (int c = 0; c < W; ++c) pre[t - t0][c] += ln.bias[c];
    }
    float *x = &pre[0][0], *d = &dt[0][0];
    const int64_t m = (t1 - t0) * W;
    if (p.softplus) {
#pragma omp simd
      for (int64_t i = 0; i < m; ++i) d[i] = softplus(x[i]);
    } else {
      for (int64_t i = 0; i < m; ++i) d[i] = x[i];
    }
  }
};

// One step of the recurrence on the lanes: h = a ⊙ h + Δ'u·B_t, y = C_t·h + D·u.
// With KEEP, the decays and the new states are also written to E[k][c] and H[k][c].
template <int NC, bool KEEP>
inline void step(const Problem& p, const Item& it, const Lanes& ln, int64_t t, const float* dt,
                 const float* uv, float (*h)[W], float* y, float (*E)[W], float (*H)[W]) {
  const int64_t n = NC > 0 ? NC : p.n;
  const float *Bt = p.B.at(it.bi, t) + it.gi * p.Bsg, *Ct = p.C.at(it.bi, t) + it.gi * p.Csg;
  alignas(32) float du[W], acc[2][W];  // two partial sums: shorter dependency chains
  for (int c = 0; c < W; ++c) {
    du[c] = dt[c] * uv[c];
    acc[0][c] = ln.D[c] * uv[c];
    acc[1][c] = 0.0f;
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < n; ++k) {  // unrolled: independent exps side by side
    const float bk = Bt[k], ck = Ct[k];
    float* ak = acc[k & 1];
#pragma omp simd
    for (int c = 0; c < W; ++c) {
      const float a = fast_exp(std::fmax(dt[c] * ln.A[k][c], kLogDecayMin));
      const float hk = a * h[k][c] + du[c] * bk;
      h[k][c] = hk;
      ak[c] += hk * ck;
      if (KEEP) {
        E[k][c] = a;
        H[k][c] = hk;
      }
    }
  }
  for (int c = 0; c < W; ++c) y[c] = acc[0][c] + acc[1][c];
}

void init_state(const Problem& p, const Item& it, float (*h)[W]) {
  for (int64_t k = 0; k < p.n; ++k)
    for (int c = 0; c < W; ++c)
      h[k][c] = p.h0 && c < it.w ? p.h0[(it.bi * p.d + it.c0 + c) * p.n + k] : 0.0f;
}

template <int NC>
void forward_item(const Problem& p, int64_t i, float* out, float* last) {
  const Item it(p, i);
  const Lanes ln(p, it);
  alignas(32) float h[256][W];
  Block bk;
  init_state(p, it, h);
  for (int64_t t0 = 0; t0 < p.L; t0 += T) {
    bk.gather(p, it, ln, t0);
    for (int64_t t = t0; t < bk.t1; ++t)
      step<NC, false>(p, it, ln, t, bk.dt[t - t0], bk.u[t - t0], h, bk.y[t - t0], nullptr, nullptr);
    if (p.z.p) {
      float *y = &bk.y[0][0], *z = &bk.z[0][0];
      const int64_t m = (bk.t1 - t0) * W;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) y[j] *= silu(z[j]);
    }
    for (int64_t t = t0; t < bk.t1; ++t) store(bk.y[t - t0], it.w, out + (it.bi * p.L + t) * p.d + it.c0);
  }
  for (int64_t k = 0; k < p.n; ++k)
    for (int c = 0; c < it.w; ++c) last[(it.bi * p.d + it.c0 + c) * p.n + k] = h[k][c];
}

struct Grads {
  const float *dout, *dlast;  // dout (b, L, d) contiguous; dlast (b, d, n)
  float *du, *ddelta, *dz;    // (b, L, d)
  float *dh0, *dA_rows;       // (b, d, n)
  float *dD_rows, *dbias_rows;  // (b, d)
  float *dB_part, *dC_part;     // (chunks, b, L, g, n)
};

// Thread-local buffers of one work item. The states and decays of the whole sequence are kept
// (H, E: L·n·W floats each) up to kKeepAll steps·states; longer sequences keep only the
// block-boundary states and recompute each block's states in backward.
constexpr int64_t kKeepAll = 16384;  // L·n: 512 kB per buffer

struct Work {
  bool keep_all;
  std::vector<float> bound, Y, H, E;
  Block bk;
  explicit Work(const Problem& p)
      : keep_all(p.L * p.n <= kKeepAll), bound(((p.L + T - 1) / T) * p.n * W), Y(p.L * W),
        H((keep_all ? p.L : T) * p.n * W), E((keep_all ? p.L : T) * p.n * W) {}
};

template <int NC>
void backward_item(const Problem& p, const Grads& gr, int64_t i, int64_t chunk, Work& wk) {
  const int64_t n = NC > 0 ? NC : p.n, L = p.L, d = p.d;
  const Item it(p, i);
  const Lanes ln(p, it);
  Block& bk = wk.bk;
  auto* bound = reinterpret_cast<float(*)[W]>(wk.bound.data());  // [block * n + k][c]
  auto* Y = reinterpret_cast<float(*)[W]>(wk.Y.data());          // pre-gate outputs [t][c]
  auto* H = reinterpret_cast<float(*)[W]>(wk.H.data());          // [(t - t0) * n + k][c]
  auto* E = reinterpret_cast<float(*)[W]>(wk.E.data());
  alignas(32) float h[256][W], g[256][W], dA[256][W], pB[256][W], pC[256][W];
  // pass 1: the forward again, keeping the pre-gate outputs and the block-boundary states
  // (keep_all: the states are kept right away, and pass 2 recomputes nothing)
  const bool keep = wk.keep_all;
  init_state(p, it, h);
  for (int64_t t0 = 0; t0 < L; t0 += T) {
    std::memcpy(bound[(t0 / T) * n], h, sizeof(float) * n * W);
    bk.gather(p, it, ln, t0);
    for (int64_t t = t0; t < bk.t1; ++t) {
      if (keep)
        step<NC, true>(p, it, ln, t, bk.dt[t - t0], bk.u[t - t0], h, Y[t], E + t * n, H + t * n);
      else
        step<NC, false>(p, it, ln, t, bk.dt[t - t0], bk.u[t - t0], h, Y[t], nullptr, nullptr);
    }
  }
  // pass 2: block by block in reverse (the block's states again, unless kept), then the
  // gradient recurrence
  for (int64_t k = 0; k < n; ++k)
    for (int c = 0; c < W; ++c) {
      g[k][c] = gr.dlast && c < it.w ? gr.dlast[(it.bi * d + it.c0 + c) * n + k] : 0.0f;
      dA[k][c] = 0.0f;
    }
  const int64_t part = chunk * p.b * L * p.g * n;
  alignas(32) float dD[W] = {0}, dbias[W] = {0}, ydummy[W], sgB[W], du[W];
  alignas(32) float dy[T][W], dz[T][W], ddt[T][W], dus[T][W];
  for (int64_t blk = (L - 1) / T; blk >= 0; --blk) {
    const int64_t t0 = blk * T, off = keep ? 0 : t0;  // H, E hold steps [off, ...)
    if (L > T) bk.gather(p, it, ln, t0);  // (with one block, pass 1 left it in bk)
    if (!keep) {
      std::memcpy(h, bound[blk * n], sizeof(float) * n * W);
      for (int64_t t = t0; t < bk.t1; ++t)
        step<NC, true>(p, it, ln, t, bk.dt[t - t0], bk.u[t - t0], h, ydummy, E + (t - t0) * n, H + (t - t0) * n);
    }
    const int64_t t1 = bk.t1, m = (t1 - t0) * W;
    for (int64_t t = t0; t < t1; ++t) load(gr.dout + (it.bi * L + t) * d + it.c0, it.w, dy[t - t0]);
    if (p.z.p) {  // out = Y·silu(z): dY = dout·silu(z), dz = dout·Y·silu'(z)
      float *dyf = &dy[0][0], *dzf = &dz[0][0];
      const float *zf = &bk.z[0][0], *yf = &Y[t0][0];
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        const float s = sigmoid(zf[j]);
        dzf[j] = dyf[j] * yf[j] * s * (1.0f + zf[j] * (1.0f - s));
        dyf[j] *= zf[j] * s;
      }
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t j = t - t0;
      const float *dt = bk.dt[j], *uv = bk.u[j], *dyt = dy[j];
      for (int c = 0; c < W; ++c) {
        du[c] = dt[c] * uv[c];
        ddt[j][c] = 0.0f;
        sgB[c] = 0.0f;
      }
      const float *Bt = p.B.at(it.bi, t) + it.gi * p.Bsg, *Ct = p.C.at(it.bi, t) + it.gi * p.Csg;
      float* dBt = gr.dB_part + part + ((it.bi * L + t) * p.g + it.gi) * n;
      float* dCt = gr.dC_part + part + ((it.bi * L + t) * p.g + it.gi) * n;
      const float(*Ht)[W] = H + (t - off) * n;
      const float(*Hp)[W] = t > t0 || (keep && t > 0) ? H + (t - off - 1) * n : bound + blk * n;
      const float(*Et)[W] = E + (t - off) * n;
      float* dl_A = ddt[j];
#pragma GCC unroll 2
      for (int64_t k = 0; k < n; ++k) {
        const float bkk = Bt[k], ck = Ct[k];
#pragma omp simd
        for (int c = 0; c < W; ++c) {
          const float gk = g[k][c] + ck * dyt[c];
          pC[k][c] = dyt[c] * Ht[k][c];  // summed over the lanes (channels) below
          pB[k][c] = gk * du[c];
          sgB[c] += gk * bkk;
          const float dl = gk * Et[k][c] * Hp[k][c];
          dA[k][c] += dl * dt[c];
          dl_A[c] += dl * ln.A[k][c];
          g[k][c] = Et[k][c] * gk;
        }
      }
      int64_t k = 0;
      for (alignas(32) float sums[W]; k + W <= n; k += W) {
        sum_rows8(pB + k, sums);
        for (int q = 0; q < W; ++q) dBt[k + q] += sums[q];
        sum_rows8(pC + k, sums);
        for (int q = 0; q < W; ++q) dCt[k + q] += sums[q];
      }
      for (; k < n; ++k)
        for (int c = 0; c < W; ++c) {
          dBt[k] += pB[k][c];
          dCt[k] += pC[k][c];
        }
      for (int c = 0; c < W; ++c) {
        dus[j][c] = dt[c] * sgB[c] + ln.D[c] * dyt[c];
        ddt[j][c] += uv[c] * sgB[c];
      }
    }
    float *ddf = &ddt[0][0], *dyf = &dy[0][0];
    const float *pref = &bk.pre[0][0], *uf = &bk.u[0][0];
    if (p.softplus) {  // dΔ = dΔ'·sigmoid(Δ + bias)
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) ddf[j] *= sigmoid(pref[j]);
    }
    for (int64_t j = 0; j < m; ++j) {
      dD[j % W] += dyf[j] * uf[j];
      dbias[j % W] += ddf[j];
    }
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row = (it.bi * L + t) * d + it.c0;
      store(dus[t - t0], it.w, gr.du + row);
      store(ddt[t - t0], it.w, gr.ddelta + row);
      if (p.z.p) store(dz[t - t0], it.w, gr.dz + row);
    }
  }
  for (int c = 0; c < it.w; ++c) {
    const int64_t r = it.bi * d + it.c0 + c;
    for (int64_t k = 0; k < n; ++k) {
      gr.dA_rows[r * n + k] = dA[k][c];
      gr.dh0[r * n + k] = g[k][c];
    }
    gr.dD_rows[r] = dD[c];
    gr.dbias_rows[r] = dbias[c];
  }
}

#define DISPATCH_N(n, FN, ...)           \
  switch (n) {                           \
    case 8: FN<8>(__VA_ARGS__); break;   \
    case 16: FN<16>(__VA_ARGS__); break; \
    default: FN<0>(__VA_ARGS__);         \
  }

void check(const at::Tensor& t, const char* name, int dim) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == dim, name,
              " must be a float32 CPU tensor with ", dim, " dims");
}

View view(const at::Tensor& t, const char* name) {  // (b, L, d) with unit channel stride
  check(t, name, 3);
  TORCH_CHECK(t.stride(2) == 1, name, " must have unit channel stride (channel-last)");
  return {t.data_ptr<float>(), t.stride(0), t.stride(1)};
}

Problem problem(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& At, const at::Tensor& B,
                const at::Tensor& C, const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z,
                const c10::optional<at::Tensor>& bias, bool softplus, const c10::optional<at::Tensor>& h0) {
  check(B, "B", 4);
  check(C, "C", 4);
  check(At, "A^T", 2);
  TORCH_CHECK(At.is_contiguous() && B.stride(3) == 1 && C.stride(3) == 1, "A^T contiguous, B/C unit state stride");
  for (auto* t : {&D, &bias, &h0})
    if (t->has_value() && (*t)->defined())
      TORCH_CHECK((*t)->is_contiguous() && (*t)->scalar_type() == at::kFloat, "D, bias, h0: contiguous float32");
  const View vz = z.has_value() && z->defined() ? view(*z, "z") : View{nullptr, 0, 0};
  const View vB{B.data_ptr<float>(), B.stride(0), B.stride(1)}, vC{C.data_ptr<float>(), C.stride(0), C.stride(1)};
  Problem p{view(u, "u"), view(delta, "delta"), vz, vB, vC, B.stride(2), C.stride(2),
            At.data_ptr<float>(), optional_ptr(D), optional_ptr(bias), optional_ptr(h0), softplus,
            u.size(0), u.size(2), u.size(1), At.size(0), B.size(2)};
  TORCH_CHECK(p.n <= 256, "selective_scan_cpu: d_state must be at most 256");
  TORCH_CHECK(B.sizes() == C.sizes() && B.size(1) == p.L && B.size(3) == p.n && p.d % p.g == 0,
              "B and C must be (b, L, g, n)");
  return p;
}

// Work items per chunk: at least ~16k state updates, so that short scans are not split thin.
int64_t grain(const Problem& p) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, p.L * p.n * W)); }

}  // namespace

// u, delta, z: (b, L, d) channel-last views; At (n, d); B, C (b, L, g, n). Returns out (b, L, d)
// and the last state (b, d, n).
std::vector<at::Tensor> scan_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& At,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                                 const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& bias,
                                 bool softplus, const c10::optional<at::Tensor>& h0) {
  const Problem p = problem(u, delta, At, B, C, D, z, bias, softplus, h0);
  auto out = at::empty({p.b, p.L, p.d}, u.options());
  auto last = at::empty({p.b, p.d, p.n}, u.options());
  float *po = out.data_ptr<float>(), *pl = last.data_ptr<float>();
  at::parallel_for(0, p.items(), grain(p), [&](int64_t i0, int64_t i1) {
    const DenormalsAreZero ftz;
    for (int64_t i = i0; i < i1; ++i) DISPATCH_N(p.n, forward_item, p, i, po, pl);
  });
  return {out, last};
}

// Returns du, ddelta (b, L, d), dA_rows (b, d, n), dB_part, dC_part (chunks, b, L, g, n),
// dD_rows, dbias_rows (b, d), dz (b, L, d) or undefined, dh0 (b, d, n). The caller sums the
// row and chunk partials.
std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& At,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                                 const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& bias,
                                 bool softplus, const c10::optional<at::Tensor>& h0, const at::Tensor& dout,
                                 const c10::optional<at::Tensor>& dlast) {
  const Problem p = problem(u, delta, At, B, C, D, z, bias, softplus, h0);
  check(dout, "dout", 3);
  TORCH_CHECK(dout.is_contiguous() && dout.sizes() == at::IntArrayRef({p.b, p.L, p.d}), "dout (b, L, d)");
  if (dlast.has_value() && dlast->defined()) TORCH_CHECK(dlast->is_contiguous(), "dlast contiguous");
  const int64_t items = p.items();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), items / grain(p)));
  auto o = u.options();
  auto du = at::empty({p.b, p.L, p.d}, o), ddelta = at::empty({p.b, p.L, p.d}, o);
  auto dz = p.z.p ? at::empty({p.b, p.L, p.d}, o) : at::Tensor();
  auto dA_rows = at::empty({p.b, p.d, p.n}, o), dh0 = at::empty({p.b, p.d, p.n}, o);
  auto dD_rows = at::empty({p.b, p.d}, o), dbias_rows = at::empty({p.b, p.d}, o);
  auto dB_part = at::zeros({chunks, p.b, p.L, p.g, p.n}, o), dC_part = at::zeros({chunks, p.b, p.L, p.g, p.n}, o);
  Grads gr{dout.data_ptr<float>(), optional_ptr(dlast), du.data_ptr<float>(), ddelta.data_ptr<float>(),
           p.z.p ? dz.data_ptr<float>() : nullptr, dh0.data_ptr<float>(), dA_rows.data_ptr<float>(),
           dD_rows.data_ptr<float>(), dbias_rows.data_ptr<float>(), dB_part.data_ptr<float>(),
           dC_part.data_ptr<float>()};
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    const DenormalsAreZero ftz;
    Work wk(p);
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t i = items * c / chunks; i < items * (c + 1) / chunks; ++i)
        DISPATCH_N(p.n, backward_item, p, gr, i, c, wk);
  });
  return {du, ddelta, dA_rows, dB_part, dC_part, dD_rows, dbias_rows, dz, dh0};
}
