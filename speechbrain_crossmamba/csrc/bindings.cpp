// Python bindings of the C++ CPU kernels (loaded by speechbrain_crossmamba/nnet/_cpu_kernels.py).
#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("scan_fwd", &scan_fwd, "selective scan forward (fp32, CPU, channel-last)");
  m.def("scan_bwd", &scan_bwd, "selective scan backward (fp32, CPU, channel-last)");
  m.def("conv_fwd", &conv_fwd, "causal depthwise conv1d forward (fp32, CPU, channel-last)");
  m.def("conv_bwd", &conv_bwd, "causal depthwise conv1d backward (fp32, CPU, channel-last)");
}
