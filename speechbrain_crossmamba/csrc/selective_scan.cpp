// The "cpu" backend of selective_scan: a fused forward and backward of Mamba's selective scan.
//
// One work item is a (batch, channel) row. Its n-dim state lives in a small local array, and
// exp(Δ·A) is computed in the inner loop over n, which the compiler vectorises (with
// -ffast-math, GCC calls glibc's vector expf). Backward recomputes the row's states into a
// thread-local buffer of L·n floats, then runs the state-gradient recurrence in reverse:
//   g_t = C_t·dy_t + a_{t+1}·g_{t+1},   d log a_t = g_t·a_t·h_{t-1}.
// No (b, d, L, n) tensor is ever allocated. dB and dC are sums over the channels of a group:
// each chunk of rows accumulates into its own partial buffer, and the partials are summed by
// the caller (no atomics). Parallelism is ATen's (at::parallel_for), so torch.set_num_threads
// applies.
//
// Layouts (all fp32, contiguous): u, delta, z, out (b, d, L); A (d, n); B, C (b, g, L, n);
// D, delta_bias (d); initial and last state (b, d, n).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace {

constexpr float kLogDecayMin = -80.0f;  // as LOG_DECAY_MIN in the torch backend

// exp(x) for x in [-87, 88] (clamped), inline so that loops calling it vectorise without a
// function call (a vector call spills every register). Cephes' expf: range reduction by
// ln 2 in two parts and a degree-5 polynomial, about 1 ulp.
#pragma omp declare simd notinbranch
inline float fast_exp(float x) {
  x = std::fmin(std::fmax(x, -87.0f), 88.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}


struct Args {
  const float *u, *delta, *A, *B, *C, *D, *z, *bias, *h0;
  bool softplus;
  int64_t b, d, L, n, g;
  const float* Brow(int64_t bi, int64_t di) const { return B + ((bi * g + di / (d / g)) * L) * n; }
  const float* Crow(int64_t bi, int64_t di) const { return C + ((bi * g + di / (d / g)) * L) * n; }
  // The step sizes of row r, Δ' = softplus(Δ + bias), in one vectorised pass over time.
  void steps(int64_t r, float* dts) const {
    const float *drow = delta + r * L, b0 = bias ? bias[r % d] : 0.0f;
    if (softplus) {
#pragma omp simd
      for (int64_t t = 0; t < L; ++t) {
        const float x = drow[t] + b0;
        dts[t] = x > 20.0f ? x : std::log1p(std::exp(x));
      }
    } else {
#pragma omp simd
      for (int64_t t = 0; t < L; ++t) dts[t] = drow[t] + b0;
    }
  }
};

// The recurrence of one row, from its step sizes: Y[t] = C_t·h_t + D·u_t (before the gate).
// NC > 0 fixes n at compile time (registers, full unrolling). If H is given, the states h_t
// are written there (L·n), and the decays to E; if last is given, the final state.
template <int NC, bool STORE>
void scan_row(const Args& a, int64_t r, const float* dts, float* Y, float* H, float* E, float* last) {
  const int64_t n = NC > 0 ? NC : a.n, L = a.L, bi = r / a.d, di = r % a.d;
  const float* u = a.u + r * L;
  const float *Bp = a.Brow(bi, di), *Cp = a.Crow(bi, di), *Ad = a.A + di * n;
  const float Dv = a.D ? a.D[di] : 0.0f;
  float h[NC > 0 ? NC : 256];
  float Av[NC > 0 ? NC : 256];
  for (int64_t k = 0; k < n; ++k) {
    h[k] = a.h0 ? a.h0[r * n + k] : 0.0f;
    Av[k] = Ad[k];
  }
  for (int64_t t = 0; t < L; ++t) {
    const float dt = dts[t], du = dt * u[t];
    const float *Bt = Bp + t * n, *Ct = Cp + t * n;
    float y = 0.0f;
#pragma omp simd reduction(+ : y)
    for (int64_t k = 0; k < n; ++k) {
      const float decay = fast_exp(std::fmax(dt * Av[k], kLogDecayMin));
      h[k] = decay * h[k] + du * Bt[k];
      y += h[k] * Ct[k];
      if (STORE) {
        H[t * n + k] = h[k];
        E[t * n + k] = decay;
      }
    }
    Y[t] = y + Dv * u[t];
  }
  if (last)
    for (int64_t k = 0; k < n; ++k) last[r * n + k] = h[k];
}

template <int NC>
void forward_row(const Args& a, int64_t r, float* out, float* last, float* dts) {
  a.steps(r, dts);
  float* y = out + r * a.L;
  scan_row<NC, false>(a, r, dts, y, nullptr, nullptr, last);
  if (a.z) {
    const float* z = a.z + r * a.L;
#pragma omp simd
    for (int64_t t = 0; t < a.L; ++t) y[t] *= z[t] / (1.0f + fast_exp(-z[t]));
  }
}

struct Grads {
  const float *dout, *dlast;
  float *du, *ddelta, *dz, *dh0;
  float *dA_rows, *dD_rows, *dbias_rows;  // per-row partial sums: (b, d, n), (b, d), (b, d)
  float *dB_part, *dC_part;               // per-chunk partials: (chunks, b, g, L, n)
};

struct Work {  // thread-local buffers of one row
  std::vector<float> H, E, dts, Y, dy;
  explicit Work(const Args& a) : H(a.L * a.n), E(a.L * a.n), dts(a.L), Y(a.L), dy(a.L) {}
};

template <int NC>
void backward_row(const Args& a, const Grads& gr, int64_t r, int64_t chunk, Work& w) {
  const int64_t n = NC > 0 ? NC : a.n, L = a.L, bi = r / a.d, di = r % a.d;
  float *H = w.H.data(), *E = w.E.data(), *dts = w.dts.data(), *Y = w.Y.data(), *dys = w.dy.data();
  a.steps(r, dts);
  scan_row<NC, true>(a, r, dts, Y, H, E, nullptr);
  const float *u = a.u + r * L, *dout = gr.dout + r * L, *h0 = a.h0 ? a.h0 + r * n : nullptr;
  if (a.z) {  // out = Y·silu(z): dY = dout·silu(z), dz = dout·Y·silu'(z)
    const float* z = a.z + r * L;
    float* dz = gr.dz + r * L;
#pragma omp simd
    for (int64_t t = 0; t < L; ++t) {
      const float s = 1.0f / (1.0f + fast_exp(-z[t]));
      dz[t] = dout[t] * Y[t] * s * (1.0f + z[t] * (1.0f - s));
      dys[t] = dout[t] * z[t] * s;
    }
  } else {
    for (int64_t t = 0; t < L; ++t) dys[t] = dout[t];
  }
  const float *Bp = a.Brow(bi, di), *Cp = a.Crow(bi, di), *Ad = a.A + di * n;
  const int64_t gi = di / (a.d / a.g), part = ((chunk * a.b + bi) * a.g + gi) * L * n;
  float *dBp = gr.dB_part + part, *dCp = gr.dC_part + part;
  float *du = gr.du + r * L, *ddelta = gr.ddelta + r * L;
  float g[NC > 0 ? NC : 256], dA[NC > 0 ? NC : 256], Av[NC > 0 ? NC : 256];
  float zeros[NC > 0 ? NC : 256];
  for (int64_t k = 0; k < n; ++k) {
    g[k] = gr.dlast ? gr.dlast[r * n + k] : 0.0f;
    dA[k] = 0.0f;
    Av[k] = Ad[k];
    zeros[k] = 0.0f;
  }
  for (int64_t t = L - 1; t >= 0; --t) {
    const float dt = dts[t], ut = u[t], dut = dt * ut, dy = dys[t];
    const float *Bt = Bp + t * n, *Ct = Cp + t * n, *Ht = H + t * n, *Et = E + t * n;
    const float* Hp = t > 0 ? H + (t - 1) * n : (h0 ? h0 : zeros);
    float *dBt = dBp + t * n, *dCt = dCp + t * n;
    float sum_gB = 0.0f, sum_dlA = 0.0f;
#pragma omp simd reduction(+ : sum_gB, sum_dlA)
    for (int64_t k = 0; k < n; ++k) {
      const float decay = Et[k];
      const float gk = g[k] + Ct[k] * dy;
      dCt[k] += dy * Ht[k];
      dBt[k] += gk * dut;
      sum_gB += gk * Bt[k];
      const float dl = gk * decay * Hp[k];
      dA[k] += dl * dt;
      sum_dlA += dl * Av[k];
      g[k] = decay * gk;
    }
    ddelta[t] = sum_dlA + ut * sum_gB;
    du[t] = dt * sum_gB;
  }
  const float Dv = a.D ? a.D[di] : 0.0f, *drow = a.delta + r * L, b0 = a.bias ? a.bias[di] : 0.0f;
  float dD = 0.0f, dbias = 0.0f;
  if (a.softplus) {  // dΔ = dΔ' · sigmoid(Δ + bias)
#pragma omp simd
    for (int64_t t = 0; t < L; ++t) ddelta[t] /= 1.0f + fast_exp(-(drow[t] + b0));
  }
#pragma omp simd reduction(+ : dD, dbias)
  for (int64_t t = 0; t < L; ++t) {
    du[t] += Dv * dys[t];
    dD += dys[t] * u[t];
    dbias += ddelta[t];
  }
  for (int64_t k = 0; k < n; ++k) {
    gr.dA_rows[r * n + k] = dA[k];
    if (gr.dh0) gr.dh0[r * n + k] = g[k];
  }
  gr.dD_rows[r] = dD;
  gr.dbias_rows[r] = dbias;
}

const float* ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<float>() : nullptr;
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
              " must be a contiguous float32 CPU tensor");
}

Args make_args(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
               const at::Tensor& C, const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z,
               const c10::optional<at::Tensor>& bias, bool softplus, const c10::optional<at::Tensor>& h0) {
  for (auto* p : {&u, &delta, &A, &B, &C}) check(*p, "selective_scan_cpu input");
  for (auto* p : {&D, &z, &bias, &h0})
    if (p->has_value() && (*p)->defined()) check(**p, "selective_scan_cpu optional input");
  Args a{u.data_ptr<float>(), delta.data_ptr<float>(), A.data_ptr<float>(), B.data_ptr<float>(),
         C.data_ptr<float>(), ptr(D), ptr(z), ptr(bias), ptr(h0), softplus,
         u.size(0), u.size(1), u.size(2), A.size(1), B.size(1)};
  TORCH_CHECK(a.n <= 256, "selective_scan_cpu: d_state must be at most 256");
  TORCH_CHECK(B.sizes() == C.sizes() && B.size(2) == a.L && B.size(3) == a.n, "B, C must be (b, g, L, n)");
  return a;
}

#define DISPATCH_N(n, FN, ...)              \
  switch (n) {                              \
    case 4: FN<4>(__VA_ARGS__); break;      \
    case 8: FN<8>(__VA_ARGS__); break;      \
    case 16: FN<16>(__VA_ARGS__); break;    \
    case 32: FN<32>(__VA_ARGS__); break;    \
    case 64: FN<64>(__VA_ARGS__); break;    \
    default: FN<0>(__VA_ARGS__);            \
  }

// Rows per chunk: at least ~32k state updates, so that short scans are not split to nothing.
int64_t grain(const Args& a) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, a.L * a.n)); }

}  // namespace

std::vector<at::Tensor> scan_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                                 const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& bias,
                                 bool softplus, const c10::optional<at::Tensor>& h0) {
  const Args a = make_args(u, delta, A, B, C, D, z, bias, softplus, h0);
  auto out = at::empty_like(u);
  auto last = at::empty({a.b, a.d, a.n}, u.options());
  float *po = out.data_ptr<float>(), *pl = last.data_ptr<float>();
  at::parallel_for(0, a.b * a.d, grain(a), [&](int64_t begin, int64_t end) {
    std::vector<float> dts(a.L);
    for (int64_t r = begin; r < end; ++r) DISPATCH_N(a.n, forward_row, a, r, po, pl, dts.data());
  });
  return {out, last};
}

// Returns du, ddelta, dA_rows (b, d, n), dB_part, dC_part (chunks, b, g, L, n), dD_rows, dbias_rows
// (b, d), dz (or undefined), dh0 (b, d, n). The caller sums the row and chunk partials.
std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                                 const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& bias,
                                 bool softplus, const c10::optional<at::Tensor>& h0, const at::Tensor& dout,
                                 const c10::optional<at::Tensor>& dlast) {
  const Args a = make_args(u, delta, A, B, C, D, z, bias, softplus, h0);
  check(dout, "dout");
  const int64_t rows = a.b * a.d;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / grain(a)));
  auto du = at::empty_like(u), ddelta = at::empty_like(u);
  auto dz = a.z ? at::empty_like(u) : at::Tensor();
  auto dA_rows = at::empty({a.b, a.d, a.n}, u.options()), dh0 = at::empty({a.b, a.d, a.n}, u.options());
  auto dD_rows = at::empty({a.b, a.d}, u.options()), dbias_rows = at::empty({a.b, a.d}, u.options());
  auto dB_part = at::zeros({chunks, a.b, a.g, a.L, a.n}, u.options());
  auto dC_part = at::zeros({chunks, a.b, a.g, a.L, a.n}, u.options());
  if (dlast.has_value() && dlast->defined()) check(*dlast, "dlast");
  Grads gr{dout.data_ptr<float>(), ptr(dlast), du.data_ptr<float>(), ddelta.data_ptr<float>(),
           a.z ? dz.data_ptr<float>() : nullptr, dh0.data_ptr<float>(), dA_rows.data_ptr<float>(),
           dD_rows.data_ptr<float>(), dbias_rows.data_ptr<float>(), dB_part.data_ptr<float>(),
           dC_part.data_ptr<float>()};
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    Work w(a);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
      for (int64_t r = r0; r < r1; ++r) DISPATCH_N(a.n, backward_row, a, gr, r, c, w);
    }
  });
  return {du, ddelta, dA_rows, dB_part, dC_part, dD_rows, dbias_rows, dz, dh0};
}

std::vector<at::Tensor> conv_fwd(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& history, bool silu);
std::vector<at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& history, bool silu, const at::Tensor& dout);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("scan_fwd", &scan_fwd, "selective scan forward (fp32, CPU)");
  m.def("scan_bwd", &scan_bwd, "selective scan backward (fp32, CPU)");
  m.def("conv_fwd", &conv_fwd, "causal depthwise conv1d forward (fp32, CPU)");
  m.def("conv_bwd", &conv_bwd, "causal depthwise conv1d backward (fp32, CPU)");
}
