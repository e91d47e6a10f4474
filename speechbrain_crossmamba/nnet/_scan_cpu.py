"""The ``"cpu"`` backend of ``selective_scan``: the fused C++ kernel as an autograd Function.

The kernel (``csrc/selective_scan.cpp``) runs one (batch, channel) row per work item with
the n-dim state in registers, and recomputes a row's states in backward, so neither pass
allocates a (b, d, L, n) tensor: training memory is O(b·d·L). Inputs are cast to fp32
(bf16 works, with fp32 state and accumulation); B and C are read as (b, g, L, n), which is
free for the (b, L, n) projections a Mamba layer makes.

Authors
 * speechbrain-crossmamba contributors
"""

import torch

from speechbrain_crossmamba.nnet._cpu_kernels import cpu_kernels


def _f32(t):
    return None if t is None else t.float().contiguous()


def scan_cpu(u, delta, A, B, C, D, z, delta_bias, softplus, initial_state=None):
    """Runs the fused scan; B, C are (b, g, n, L). Returns (out fp32 (b, d, L), last (b, d, n))."""
    BT = B.float().transpose(-1, -2).contiguous()
    CT = C.float().transpose(-1, -2).contiguous()
    args = map(_f32, (u, delta, A, BT, CT, D, z, delta_bias))
    return SelectiveScanCPU.apply(*args, softplus, _f32(initial_state))


class SelectiveScanCPU(torch.autograd.Function):
    """Fused selective scan; B and C time-major per group: (b, g, L, n)."""

    @staticmethod
    def forward(ctx, u, delta, A, BT, CT, D, z, delta_bias, softplus, h0):
        out, last = cpu_kernels().scan_fwd(u, delta, A, BT, CT, D, z, delta_bias, softplus, h0)
        ctx.save_for_backward(u, delta, A, BT, CT, D, z, delta_bias, h0)
        ctx.softplus = softplus
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, BT, CT, D, z, delta_bias, h0 = ctx.saved_tensors
        du, ddelta, dA_rows, dB_part, dC_part, dD_rows, dbias_rows, dz, dh0 = cpu_kernels().scan_bwd(
            u, delta, A, BT, CT, D, z, delta_bias, ctx.softplus, h0,
            dout.float().contiguous(), None if dlast is None else dlast.float().contiguous(),
        )  # fmt: skip
        return (
            du,
            ddelta,
            dA_rows.sum(0),
            dB_part.sum(0),
            dC_part.sum(0),
            None if D is None else dD_rows.sum(0),
            None if z is None else dz,
            None if delta_bias is None else dbias_rows.sum(0),
            None,
            None if h0 is None else dh0,
        )
