"""The causal depthwise convolution of a Mamba layer, with one entry point and named backends.

``causal_conv1d(x, weight, bias, activation="silu")`` has the semantics of mamba-ssm's
companion package ``causal_conv1d_fn``: ``x`` (B, D, L), ``weight`` (D, k), left padding of
``k - 1`` frames (or the given ``history``), output (B, D, L).

Backends:

* ``"cuda"``: causal-conv1d's kernel (only when it imports, the tensors are on CUDA, no
  history is given and the kernel width is 2-4, ``CUDA_WIDTHS``);
* ``"cpu"``: our fused C++ kernel (``csrc/causal_conv.cpp``), forward and backward, with
  the SiLU fused (CPU tensors);
* ``"torch"``: ``conv1d`` and ``silu`` (or shifted products when a history is given);
* ``"auto"``: ``"cuda"``, then ``"cpu"``, then ``"torch"``, whichever is usable.

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn.functional as F

from speechbrain_crossmamba.nnet._cpu_kernels import (
    cpu_kernels,
    cpu_kernels_error,
)
from speechbrain_crossmamba.nnet._scan_cpu import channel_last
from speechbrain_crossmamba.nnet.selective_scan import optional_cuda_op

CONV_BACKENDS = ("auto", "cuda", "cpu", "torch")
#: the kernel widths causal-conv1d's CUDA kernel takes (``causal_conv1d_fn`` checks 2 <= k <= 4)
CUDA_WIDTHS = (2, 3, 4)
ACTIVATIONS = (None, "silu")


def depthwise_conv(x, weight, bias=None, dilation=1):
    """A depthwise conv without padding, as a sum of shifted products: ``[B, C, T] -> [B, C, T - P]``.

    ``P = (k - 1) · dilation`` for a weight [C, k]. On the short inputs of streaming chunks it
    is faster on CPU than ``conv1d``: ``python benchmarks/nnet_choices.py`` times both (C=64,
    k=3, 8 output frames: 17 vs 74 us on 2 cores, 2026-12-06).

    Arguments
    ---------
    x : torch.Tensor
        Input [B, C, T].
    weight : torch.Tensor
        Kernel [C, k].
    bias : torch.Tensor, optional
        Bias [C].
    dilation : int
        Dilation of the kernel.

    Returns
    -------
    torch.Tensor
        [B, C, T - P].

    Example
    -------
    >>> conv = torch.nn.Conv1d(4, 4, 3, dilation=2, groups=4)
    >>> x = torch.randn(2, 4, 20)
    >>> torch.allclose(
    ...     depthwise_conv(x, conv.weight[:, 0], conv.bias, 2),
    ...     conv(x),
    ...     atol=1e-6,
    ... )
    True
    """
    k = weight.shape[1]
    if (
        torch.compiler.is_exporting()
    ):  # one Conv node in an exported graph (ONNX)
        return F.conv1d(
            x, weight[:, None], bias, dilation=dilation, groups=weight.shape[0]
        )
    length = x.shape[-1] - (k - 1) * dilation
    y = x[..., :length] * weight[:, 0, None]
    for j in range(1, k):
        y = y.addcmul(
            weight[:, j, None], x[..., j * dilation : j * dilation + length]
        )
    return y if bias is None else y + bias[:, None]


def resolve_conv_backend(backend, device, history=False, width=None):
    """Returns the concrete backend (``"cuda"``, ``"cpu"`` or ``"torch"``) of :func:`causal_conv1d`.

    Arguments
    ---------
    backend : str
        One of ``CONV_BACKENDS``; an unusable explicit choice raises a ``RuntimeError``.
    device : torch.device
        Where the tensors are.
    history : bool
        Whether a history is given (the CUDA kernel takes none).
    width : int, optional
        The kernel width k; the CUDA kernel takes 2-4 (``CUDA_WIDTHS``), so ``"auto"`` does
        not pick it for another width. None: not checked.

    Returns
    -------
    str
        The backend.

    Example
    -------
    >>> resolve_conv_backend("torch", torch.device("cpu"))
    'torch'

    A width outside 2-4 never gets the CUDA kernel (a device object: no GPU needed):

    >>> resolve_conv_backend("auto", torch.device("cuda"), width=5)
    'torch'
    """
    if backend not in CONV_BACKENDS:
        raise ValueError(
            f"unknown causal-conv backend {backend!r}; choose one of {CONV_BACKENDS}"
        )
    width_ok = width is None or width in CUDA_WIDTHS
    if backend == "cuda" and not width_ok:
        raise RuntimeError(
            f"causal-conv backend 'cuda' takes kernel widths {CUDA_WIDTHS[0]}-"
            f"{CUDA_WIDTHS[-1]} (causal-conv1d), got width {width}; use 'auto' or 'torch'"
        )
    cuda_ok = (
        device.type == "cuda"
        and not history
        and width_ok
        and _cuda_conv() is not None
    )
    if backend == "auto":
        if cuda_ok:
            return "cuda"
        return (
            "cpu"
            if device.type == "cpu" and cpu_kernels() is not None
            else "torch"
        )
    if backend == "cuda" and not cuda_ok:
        raise RuntimeError(
            "causal-conv backend 'cuda' needs CUDA tensors, no history, and causal-conv1d: "
            "pip install 'speechbrain-crossmamba[cuda]'"
        )
    if backend == "cpu":
        if device.type != "cpu":
            raise RuntimeError(
                f"causal-conv backend 'cpu' needs CPU tensors, got {device.type}"
            )
        if cpu_kernels() is None:
            raise RuntimeError(
                f"causal-conv backend 'cpu' is unavailable: {cpu_kernels_error()}"
            )
    return backend


def _cuda_conv():
    return optional_cuda_op("causal_conv1d", "causal_conv1d_fn")


def causal_conv1d(
    x, weight, bias=None, activation=None, history=None, backend="auto"
):
    """Causal depthwise conv over time: ``x`` (B, D, L) -> (B, D, L).

    Arguments
    ---------
    x : torch.Tensor
        Input (B, D, L).
    weight : torch.Tensor
        Kernel (D, k).
    bias : torch.Tensor, optional
        Bias (D,).
    activation : str or None
        ``"silu"`` applies SiLU to the output (fused on ``"cpu"`` and ``"cuda"``).
    history : torch.Tensor, optional
        The previous ``k - 1`` input frames (B, D, k - 1), when streaming; zeros if None.
    backend : str
        ``"auto"``, ``"cuda"``, ``"cpu"`` or ``"torch"``.

    Returns
    -------
    torch.Tensor
        (B, D, L), dtype of ``x``.

    Example
    -------
    >>> conv = torch.nn.Conv1d(8, 8, 4, groups=8, padding=3)
    >>> x = torch.randn(2, 8, 30)
    >>> y = causal_conv1d(x, conv.weight[:, 0], conv.bias, activation="silu")
    >>> ref = torch.nn.functional.silu(conv(x)[..., :30])
    >>> torch.allclose(y, ref, atol=1e-5)
    True
    >>> a = causal_conv1d(x[..., :10], conv.weight[:, 0], conv.bias)
    >>> b = causal_conv1d(
    ...     x[..., 10:], conv.weight[:, 0], conv.bias, history=x[..., 7:10]
    ... )
    >>> torch.allclose(torch.cat([a, b], -1), conv(x)[..., :30], atol=1e-5)
    True
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {ACTIVATIONS}, got {activation!r}"
        )
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"x must be (B, D, L) and weight (D, k), got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    k = weight.shape[1]
    if history is not None and history.shape != (x.shape[0], x.shape[1], k - 1):
        raise ValueError(
            f"history must be (B, D, k - 1 = {k - 1}), got {tuple(history.shape)}"
        )
    backend = resolve_conv_backend(backend, x.device, history is not None, k)
    silu = activation == "silu"
    if backend == "cuda":
        return _cuda_conv()(
            x.contiguous(), weight.contiguous(), bias, activation=activation
        )
    if backend == "cpu":
        hist = None if history is None else channel_last(history).contiguous()
        with torch.autocast("cpu", enabled=False):
            y = CausalConv1dCPU.apply(
                channel_last(x), weight.float().t().contiguous(),
                None if bias is None else bias.float().contiguous(), hist, silu,
            )  # fmt: skip
        return y.transpose(1, 2).to(x.dtype)
    if history is None:
        y = F.conv1d(
            x, weight[:, None], bias, padding=k - 1, groups=x.shape[1]
        )[..., : x.shape[-1]]
    else:
        y = depthwise_conv(
            torch.cat([history.to(x.dtype), x], dim=-1), weight, bias
        )
    return F.silu(y) if silu else y


class CausalConv1dCPU(torch.autograd.Function):
    """The fused C++ causal depthwise conv on channel-last operands: x (B, L, D) with unit
    channel stride, the weight transposed (k, D), history (B, k - 1, D); returns (B, L, D)."""

    @staticmethod
    def forward(ctx, x, wT, bias, history, silu):
        """Runs the kernel; saves the inputs for backward.

        Arguments
        ---------
        ctx : object
            The autograd context.
        x : torch.Tensor
            (B, L, D) fp32.
        wT : torch.Tensor
            Transposed kernel (k, D).
        bias : torch.Tensor or None
            (D,).
        history : torch.Tensor or None
            (B, k - 1, D).
        silu : bool
            Apply SiLU to the output.

        Returns
        -------
        torch.Tensor
            (B, L, D).
        """
        ctx.save_for_backward(x, wT, bias, history)
        ctx.silu = silu
        return cpu_kernels().conv_fwd(x, wT, bias, history, silu)[0]

    @staticmethod
    def backward(ctx, dout):
        """Gradients of the inputs from that of the output.

        Arguments
        ---------
        ctx : object
            The autograd context.
        dout : torch.Tensor
            Gradient of the output (B, L, D).

        Returns
        -------
        tuple
            Gradients of ``x``, ``wT``, ``bias`` and ``history`` (None when absent), and None.
        """
        x, wT, bias, history = ctx.saved_tensors
        dx, dw_part, db_part, dhist = cpu_kernels().conv_bwd(
            x, wT, bias, history, ctx.silu, dout.float().contiguous()
        )
        db = None if bias is None else db_part.sum(0)
        return dx, dw_part.sum(0), db, None if history is None else dhist, None
