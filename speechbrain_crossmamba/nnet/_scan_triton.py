"""The ``"triton"`` backend of ``selective_scan``: forward and backward kernels in Triton.

Triton ships with PyTorch's CUDA wheels and compiles these kernels at run time for the torch
and GPU it finds, so the GPU path needs no mamba-ssm build. The algorithm is mamba-ssm's:

* one program per (batch row, block of channels in one group); the state of its channels
  (``BLOCK_D`` x ``n``, fp32) stays in registers while the program walks the sequence in time
  blocks of ``BLOCK_T`` steps, each block an associative scan of ``(exp(Δ'A), Δ' u B)``;
* the forward keeps only the state at each block boundary, (b, d, L / BLOCK_T, n) in fp32;
* the backward walks the blocks in reverse, recomputes each block's states from its boundary
  state, and runs the state gradient as a reverse associative scan. Gradients that sum over
  channels (B, C) are written per channel block and summed afterwards; those that sum over
  time (A, D, delta_bias) are accumulated in registers. No (b, d, L, n) tensor exists.

Inputs may be fp32, fp16 or bf16; the state and every accumulation are fp32. ``initial_state``
and the last state's gradient are handled in the kernels. On CPU tensors the kernels run in
Triton's interpreter when ``TRITON_INTERPRET=1`` (slow; for tests).

Authors
 * speechbrain-crossmamba contributors
"""

import os

import torch

from speechbrain_crossmamba.nnet._triton_kernels import (
    interpreted,
    kernels,
    triton,
)


def triton_error(device):
    """Why the Triton backend cannot run on ``device``, or None when it can.

    Arguments
    ---------
    device : torch.device
        Where the tensors are.

    Returns
    -------
    str or None
        A one-line reason.

    Example
    -------
    >>> triton_error(torch.device("meta"))
    "selective-scan backend 'triton' needs CUDA tensors, got meta"
    """
    if triton is None:
        return "selective-scan backend 'triton' needs the triton package (it ships with torch's CUDA wheels)"
    if device.type == "cpu":
        if interpreted():
            return None
        if os.environ.get("TRITON_INTERPRET") == "1":
            return "selective-scan backend 'triton' on CPU: TRITON_INTERPRET=1 must be set before triton is imported (set it in the shell)"
        return "selective-scan backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1, set before start, to run it on CPU slowly, for tests)"
    if device.type != "cuda":
        return f"selective-scan backend 'triton' needs CUDA tensors, got {device.type}"
    return None


def _blocks(n, L, dpg):
    """(BLOCK_D, BLOCK_N, BLOCK_T): a tile of at most 4,096 fp32 per state-sized tensor.

    BLOCK_D divides the channels per group, so a program's channels share one B and C.
    """
    bn = max(2, triton.next_power_of_2(n))
    bt = max(2, min(64, triton.next_power_of_2(L)))
    bd = 1
    while dpg % (2 * bd) == 0 and 2 * bd * bn * bt <= 4096 and bd < 16:
        bd *= 2
    return bd, bn, bt


class SelectiveScanTriton(torch.autograd.Function):
    """The scan of ``selective_scan`` in two Triton kernels.

    Shapes: u, delta, z (b, d, L); A (d, n); B, C (b, g, n, L); D, delta_bias (d,) or None;
    h0 (b, d, n) or None. Returns out (b, d, L) in u's dtype and the last state (b, d, n), fp32.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, h0, softplus):
        """Runs the forward kernel, keeping the block-boundary states for backward.

        Arguments
        ---------
        ctx : object
            The autograd context.
        u, delta, A, B, C, D, z, delta_bias, h0, softplus
            As in the class docstring.

        Returns
        -------
        tuple of torch.Tensor
            Output and last state.
        """
        dtype_A, dtype_D, dtype_bias = (
            None if t is None else t.dtype for t in (A, D, delta_bias)
        )
        u, delta = u.contiguous(), delta.contiguous()
        B, C = B.contiguous(), C.contiguous()
        A = A.float().contiguous()
        z, D, delta_bias, h0 = (
            None if t is None else t.contiguous()
            for t in (z, D, delta_bias, h0)
        )
        D = None if D is None else D.float()
        delta_bias = None if delta_bias is None else delta_bias.float()
        b, d, L = u.shape
        G, n = B.shape[1], B.shape[2]
        bd, bn, bt = _blocks(n, L, d // G)
        nchunks = triton.cdiv(L, bt)
        out = torch.empty_like(u)
        states = torch.empty(b, d, nchunks, n, device=u.device)
        last = torch.empty(b, d, n, device=u.device)
        fwd, _ = kernels()
        fwd[(b, d // bd)](
            u, delta, A, B, C, _or(D, A), _or(z, u), _or(delta_bias, A), _or(h0, A),
            out, states, last, d, L, n, d // G, G, nchunks,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            HAS_H0=h0 is not None, SOFTPLUS=bool(softplus), BLOCK_D=bd, BLOCK_N=bn, BLOCK_T=bt,
        )  # fmt: skip
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.blocks, ctx.softplus = (bd, bn, bt, nchunks), bool(softplus)
        ctx.h0_dtype = None if h0 is None else h0.dtype
        ctx.param_dtypes = (dtype_A, dtype_D, dtype_bias)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        """Runs the backward kernel and sums the per-block partial gradients.

        Arguments
        ---------
        ctx : object
            The autograd context.
        dout : torch.Tensor
            Gradient of the output (b, d, L).
        dlast : torch.Tensor or None
            Gradient of the last state (b, d, n).

        Returns
        -------
        tuple
            One gradient per input of :meth:`forward`.
        """
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        bd, bn, bt, nchunks = ctx.blocks
        b, d, L = u.shape
        G, n = B.shape[1], B.shape[2]
        nblk = d // bd
        dout = dout.contiguous()
        dlast = None if dlast is None else dlast.float().contiguous()
        f32 = dict(device=u.device, dtype=torch.float32)
        du, ddl = torch.empty(b, d, L, **f32), torch.empty(b, d, L, **f32)
        dz = None if z is None else torch.empty(b, d, L, **f32)
        dB, dC = (
            torch.empty(b, nblk, n, L, **f32),
            torch.empty(b, nblk, n, L, **f32),
        )
        dA, dh0 = torch.empty(b, d, n, **f32), torch.empty(b, d, n, **f32)
        dD, dbias = torch.empty(b, d, **f32), torch.empty(b, d, **f32)
        _, bwd = kernels()
        bwd[(b, nblk)](
            u, delta, A, B, C, _or(D, A), _or(z, u), _or(delta_bias, A), states, dout, _or(dlast, A),
            du, ddl, _or(dz, du), dA, dB, dC, dD, dbias, dh0,
            d, L, n, d // G, G, nchunks,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            HAS_DLAST=dlast is not None, SOFTPLUS=ctx.softplus, BLOCK_D=bd, BLOCK_N=bn, BLOCK_T=bt,
        )  # fmt: skip
        dtype_A, dtype_D, dtype_bias = ctx.param_dtypes
        per_group = lambda t: t.reshape(b, G, nblk // G, n, L).sum(2)  # noqa: E731
        return (
            du.to(u.dtype),
            ddl.to(delta.dtype),
            dA.sum(0).to(dtype_A),
            per_group(dB).to(B.dtype),
            per_group(dC).to(C.dtype),
            None if D is None else dD.sum(0).to(dtype_D),
            None if z is None else dz.to(z.dtype),
            None if delta_bias is None else dbias.sum(0).to(dtype_bias),
            None if ctx.h0_dtype is None else dh0.to(ctx.h0_dtype),
            None,
        )


def _or(t, stand_in):
    """A stand-in pointer for an absent optional tensor (the kernel never reads it)."""
    return stand_in if t is None else t


def scan_triton(
    u, delta, A, B, C, D, z, delta_bias, softplus, initial_state=None
):
    """Runs :class:`SelectiveScanTriton` (see :func:`~.selective_scan.selective_scan`).

    Arguments
    ---------
    u, delta, A, B, C, D, z, delta_bias, softplus, initial_state
        As in ``selective_scan``, with B and C 4-D (b, g, n, L).

    Returns
    -------
    tuple of torch.Tensor
        Output (b, d, L) in u's dtype and the last state (b, d, n) in fp32.
    """
    return SelectiveScanTriton.apply(
        u, delta, A, B, C, D, z, delta_bias, initial_state, softplus
    )
