"""The ``"cpu"`` backend of ``selective_scan``: the fused C++ kernel as an autograd Function.

The kernel (``csrc/selective_scan.cpp``) works channel-last, the layout a Mamba layer makes:
``u``, ``delta`` and ``z`` are read as (b, L, d) with unit channel stride, and B, C as
(b, L, g, n), so the (b, d, L) views a mixer passes (transposes of its projections) cost no
copy; other layouts are copied once. Backward recomputes the states in time blocks, so no
(b, d, L, n) tensor is allocated: training memory is O(b·d·L). Inputs are cast to fp32 (bf16
works, with fp32 state and accumulation).

Authors
 * speechbrain-crossmamba contributors
"""

import torch

from speechbrain_crossmamba.nnet._cpu_kernels import cpu_kernels


def _fp32_unit_stride(t):
    """``t`` in fp32 with unit stride in its last dim (a copy only if needed)."""
    if t.dtype != torch.float32:
        t = t.float()
    return t if t.stride(-1) == 1 else t.contiguous()


def channel_last(t):
    """A (b, d, L) tensor as a (b, L, d) fp32 view with unit channel stride (a copy only if needed).

    Arguments
    ---------
    t : torch.Tensor or None
        (b, d, L).

    Returns
    -------
    torch.Tensor or None
        (b, L, d).

    Example
    -------
    >>> x = torch.randn(2, 5, 8).transpose(
    ...     1, 2
    ... )  # (b, d, L) view of a (b, L, d) tensor
    >>> channel_last(x).data_ptr() == x.data_ptr()
    True
    """
    return None if t is None else _fp32_unit_stride(t.transpose(1, 2))


def _states_last(t):
    """(b, g, n, L) -> a (b, L, g, n) fp32 view with unit state stride."""
    return _fp32_unit_stride(t.permute(0, 3, 1, 2))


def _f32(t):
    return None if t is None else t.float().contiguous()


def scan_cpu(u, delta, A, B, C, D, z, delta_bias, softplus, initial_state=None):
    """Runs the fused scan (see :func:`~.selective_scan.selective_scan`).

    Arguments
    ---------
    u, delta, z : torch.Tensor
        (b, d, L); ``z`` may be None.
    A : torch.Tensor
        (d, n).
    B, C : torch.Tensor
        (b, g, n, L).
    D, delta_bias : torch.Tensor
        (d,) or None.
    softplus : bool
        Apply softplus to ``delta + delta_bias``.
    initial_state : torch.Tensor, optional
        (b, d, n) state to start from.

    Returns
    -------
    tuple of torch.Tensor
        fp32 output (b, d, L) and last state (b, d, n).
    """
    out, last = SelectiveScanCPU.apply(
        channel_last(u), channel_last(delta), A.float().t().contiguous(), _states_last(B),
        _states_last(C), _f32(D), channel_last(z), _f32(delta_bias), softplus, _f32(initial_state),
    )  # fmt: skip
    return out.transpose(1, 2), last


class SelectiveScanCPU(torch.autograd.Function):
    """Fused selective scan on channel-last operands: u, delta, z (b, L, d); A^T (n, d);
    B, C (b, L, g, n). Returns out (b, L, d) and the last state (b, d, n)."""

    @staticmethod
    def forward(ctx, u, delta, At, B, C, D, z, delta_bias, softplus, h0):
        """Runs the kernel; saves the inputs for backward.

        Arguments
        ---------
        ctx : object
            The autograd context.
        u, delta, z : torch.Tensor
            (b, L, d) fp32; ``z`` may be None.
        At : torch.Tensor
            A transposed, (n, d).
        B, C : torch.Tensor
            (b, L, g, n).
        D, delta_bias : torch.Tensor
            (d,) or None.
        softplus : bool
            Apply softplus to ``delta + delta_bias``.
        h0 : torch.Tensor
            Initial state (b, d, n) or None.

        Returns
        -------
        tuple of torch.Tensor
            Output (b, L, d) and last state (b, d, n).
        """
        out, last = cpu_kernels().scan_fwd(
            u, delta, At, B, C, D, z, delta_bias, softplus, h0
        )
        ctx.save_for_backward(u, delta, At, B, C, D, z, delta_bias, h0)
        ctx.softplus = softplus
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        """Gradients of the inputs from those of the output and the last state.

        Arguments
        ---------
        ctx : object
            The autograd context.
        dout : torch.Tensor
            Gradient of the output (b, L, d).
        dlast : torch.Tensor or None
            Gradient of the last state (b, d, n).

        Returns
        -------
        tuple
            One gradient per input of :meth:`forward` (None for ``softplus`` and absent ones).
        """
        u, delta, At, B, C, D, z, delta_bias, h0 = ctx.saved_tensors
        du, ddelta, dA_rows, dB_part, dC_part, dD_rows, dbias_rows, dz, dh0 = cpu_kernels().scan_bwd(
            u, delta, At, B, C, D, z, delta_bias, ctx.softplus, h0,
            dout.float().contiguous(), None if dlast is None else dlast.float().contiguous(),
        )  # fmt: skip
        return (
            du,
            ddelta,
            dA_rows.sum(0).t(),
            dB_part.sum(0),
            dC_part.sum(0),
            None if D is None else dD_rows.sum(0),
            None if z is None else dz,
            None if delta_bias is None else dbias_rows.sum(0),
            None,
            None if h0 is None else dh0,
        )
