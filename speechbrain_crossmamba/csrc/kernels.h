// The entry points of the C++ CPU kernels (selective_scan.cpp, causal_conv.cpp), bound in
// bindings.cpp. All operands are float32 CPU tensors in channel-last layout (see each file).
#pragma once

#include <torch/extension.h>

#include <vector>

// The data of an optional tensor, or nullptr when it is absent.
inline const float* optional_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<float>() : nullptr;
}

std::vector<at::Tensor> scan_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& At,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                                 const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& bias,
                                 bool softplus, const c10::optional<at::Tensor>& h0);
std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& At,
                                 const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& D,
                                 const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& bias,
                                 bool softplus, const c10::optional<at::Tensor>& h0, const at::Tensor& dout,
                                 const c10::optional<at::Tensor>& dlast);
std::vector<at::Tensor> conv_fwd(const at::Tensor& x, const at::Tensor& wT, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& history, bool silu);
std::vector<at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& wT, const c10::optional<at::Tensor>& bias,
                                 const c10::optional<at::Tensor>& history, bool silu, const at::Tensor& dout);
