"""The selective scan of Mamba (S6), with one entry point and named backends.

``selective_scan`` has the semantics, argument order and shapes of mamba-ssm's
``selective_scan_fn``::

    Δ'_t  = softplus(Δ_t + delta_bias)            (if delta_softplus)
    h_t   = exp(Δ'_t ⊙ A) ⊙ h_{t-1} + (Δ'_t ⊙ u_t) ⊗ B_t,     h_0 = 0
    y_t   = h_t · C_t + D ⊙ u_t
    out_t = y_t ⊙ silu(z_t)                        (if z is given)

Backends:

* ``"cuda"``: mamba-ssm's fused kernel (only when it imports and the tensors are on CUDA, in
  fp32, fp16 or bf16). Its backward ignores the gradient of the last state, so with
  ``return_last_state=True`` this backend returns the last state detached;
* ``"triton"``: our Triton kernels, forward and backward (CUDA tensors; CPU tensors run in
  Triton's interpreter when ``TRITON_INTERPRET=1``, for tests; see :mod:`._scan_triton`);
* ``"cpu"``: our fused C++ kernel (``csrc/selective_scan.cpp``), forward and backward, built
  on first use and cached (CPU tensors; see :mod:`._cpu_kernels`);
* ``"torch"``: our time-blocked pure-PyTorch scan with an analytic backward (CPU and GPU);
* ``"ref"``: a plain sequential loop in float64, the oracle for tests;
* ``"auto"``: on CUDA, ``"cuda"`` when mamba-ssm imports and takes the call (not float64, and
  not a last state that needs its gradient), else ``"triton"`` when Triton imports, else
  ``"torch"``; on CPU, ``"cpu"`` when the kernel builds (if it cannot be built, a warning names
  the reason once), else ``"torch"``.

The default backend can be forced with the environment variable
``SB_CROSSMAMBA_SCAN_BACKEND`` or with :func:`set_default_backend`.

The plain recurrences (the ``"ref"`` oracle, the scan from an initial state) and
:func:`hidden_attention`, the scan as a dense matrix, are in :mod:`._scan_loops`
(``hidden_attention`` is re-exported here); the argument checks are in :mod:`._scan_checks`.

Authors
 * speechbrain-crossmamba contributors
"""

import functools
import importlib
import os

import torch

from speechbrain_crossmamba.nnet._cpu_kernels import (
    cpu_kernels,
    cpu_kernels_error,
)
from speechbrain_crossmamba.nnet._scan_checks import _check_shapes, _check_state
from speechbrain_crossmamba.nnet._scan_cpu import scan_cpu
from speechbrain_crossmamba.nnet._scan_loops import (  # noqa: F401
    _scan_from,
    _scan_ref,
    hidden_attention,
)
from speechbrain_crossmamba.nnet._scan_torch import scan_torch
from speechbrain_crossmamba.nnet._scan_triton import scan_triton, triton_error

BACKENDS = ("auto", "cuda", "triton", "cpu", "torch", "ref")
_CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
ENV_VAR = "SB_CROSSMAMBA_SCAN_BACKEND"
_default_backend = None


def set_default_backend(backend):
    """Sets the backend used when ``selective_scan`` is called with ``backend="auto"``.

    Arguments
    ---------
    backend : str or None
        One of ``BACKENDS``; ``None`` restores the default
        (the environment variable ``SB_CROSSMAMBA_SCAN_BACKEND``, else ``"auto"``).

    Example
    -------
    >>> set_default_backend("torch")
    >>> get_default_backend()
    'torch'
    >>> set_default_backend(None)
    """
    global _default_backend
    if backend is not None:
        _check_name(backend)
    _default_backend = backend


def get_default_backend():
    """Returns the backend that ``backend="auto"`` resolves through (before device checks).

    Returns
    -------
    str
        One of ``BACKENDS``.
    """
    if _default_backend is not None:
        return _default_backend
    return _check_name(os.environ.get(ENV_VAR, "auto") or "auto")


def _check_name(backend):
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown selective-scan backend {backend!r}; choose one of {BACKENDS}"
        )
    return backend


@functools.cache
def optional_cuda_op(module, name):
    """Returns ``module.name`` from an optional CUDA package, or None when it does not import.

    mamba-ssm and causal-conv1d raise ImportError or OSError when their compiled extension
    is missing or broken; the result is cached so the import is tried once.

    Arguments
    ---------
    module : str
        The module to import.
    name : str
        The attribute.

    Returns
    -------
    object or None
        ``module.name``.

    Example
    -------
    >>> optional_cuda_op("no_such_cuda_package", "fn") is None
    True
    """
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, OSError, AttributeError):
        return None


def _mamba_ssm_scan():
    return optional_cuda_op(
        "mamba_ssm.ops.selective_scan_interface", "selective_scan_fn"
    )


def resolve_backend(
    backend, device, dtype=torch.float32, last_state_grad=False
):
    """Returns the concrete backend (``"cuda"``, ``"triton"``, ``"cpu"``, ``"torch"`` or ``"ref"``).

    Arguments
    ---------
    backend : str
        One of ``BACKENDS``; an unusable explicit choice raises a ``RuntimeError``.
    device : torch.device
        Where the tensors are.
    dtype : torch.dtype
        The dtype of ``u`` (mamba-ssm's kernel takes fp32, fp16 and bf16 only).
    last_state_grad : bool
        Whether the last state is returned and may need its gradient, which mamba-ssm's
        backward ignores: ``"auto"`` then skips ``"cuda"``.

    Returns
    -------
    str
        The backend.

    Example
    -------
    >>> resolve_backend("auto", torch.device("cpu")) in (
    ...     "cpu",
    ...     "torch",
    ... )  # "torch" if no compiler
    True
    """
    backend = _check_name(backend)
    if backend == "auto":
        backend = get_default_backend()
    if backend == "auto":
        if device.type == "cuda":
            cuda_ok = dtype in _CUDA_DTYPES and not last_state_grad
            if cuda_ok and _mamba_ssm_scan() is not None:
                return "cuda"
            return "triton" if triton_error(device) is None else "torch"
        return (
            "cpu"
            if device.type == "cpu" and cpu_kernels() is not None
            else "torch"
        )
    if backend == "cpu":
        if device.type != "cpu":
            raise RuntimeError(
                f"selective-scan backend 'cpu' needs CPU tensors, got {device.type}"
            )
        if cpu_kernels() is None:
            raise RuntimeError(
                f"selective-scan backend 'cpu' is unavailable: {cpu_kernels_error()}"
            )
    if backend == "triton" and triton_error(device) is not None:
        raise RuntimeError(triton_error(device))
    if backend == "cuda":
        if device.type != "cuda":
            raise RuntimeError(
                f"selective-scan backend 'cuda' needs CUDA tensors, got {device.type}"
            )
        if dtype not in _CUDA_DTYPES:
            raise RuntimeError(
                f"selective-scan backend 'cuda' (mamba-ssm) takes float32, float16 or bfloat16, got {dtype}"
            )
        if _mamba_ssm_scan() is None:
            raise RuntimeError(
                "selective-scan backend 'cuda' needs mamba-ssm with its CUDA extension: "
                "pip install 'speechbrain-crossmamba[cuda]'"
            )
    return backend


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    backend="auto",
    initial_state=None,
):
    """Runs the selective scan; arguments as mamba-ssm's ``selective_scan_fn``.

    Arguments
    ---------
    u : torch.Tensor
        Input (value), shape (b, d, L).
    delta : torch.Tensor
        Step sizes Δ, shape (b, d, L).
    A : torch.Tensor
        State matrix (real, negative), shape (d, n).
    B : torch.Tensor
        Input projection (key), shape (b, n, L) or (b, g, n, L) with g dividing d.
    C : torch.Tensor
        Output projection (query), same shape rules as ``B``.
    D : torch.Tensor, optional
        Skip connection, shape (d,).
    z : torch.Tensor, optional
        Gate, shape (b, d, L); the output is multiplied by ``silu(z)``.
    delta_bias : torch.Tensor, optional
        Bias added to Δ, shape (d,).
    delta_softplus : bool
        Apply softplus to ``Δ + delta_bias``.
    return_last_state : bool
        Also return the last state h_L, shape (b, d, n) (fp32). Its gradient flows back in every
        backend but ``"cuda"``, which returns it detached (mamba-ssm's backward ignores it);
        ``"auto"`` avoids ``"cuda"`` when the last state may need a gradient.
    backend : str
        One of ``BACKENDS``.
    initial_state : torch.Tensor, optional
        State h_0 (b, d, n) to start from instead of zero: scanning a sequence in consecutive
        chunks, each from the last state of the one before, gives the scan of the whole. The
        ``"cpu"`` and ``"triton"`` kernels take it natively (with its gradient); the other
        backends run the recurrence step by step, with an O(b·d·n·L) buffer: that path is meant
        for short streaming chunks.

    Returns
    -------
    out : torch.Tensor
        Shape (b, d, L), dtype of ``u``.
    last_state : torch.Tensor
        Only if ``return_last_state``.

    Example
    -------
    >>> b, d, n, L = 2, 8, 4, 50
    >>> u, delta, z = (
    ...     torch.randn(b, d, L),
    ...     torch.rand(b, d, L),
    ...     torch.randn(b, d, L),
    ... )
    >>> A = -torch.rand(d, n)
    >>> B, C = torch.randn(b, n, L), torch.randn(b, n, L)
    >>> out, h = selective_scan(u, delta, A, B, C, z=z, return_last_state=True)
    >>> out.shape, h.shape
    (torch.Size([2, 8, 50]), torch.Size([2, 8, 4]))
    >>> ref = selective_scan(u, delta, A, B, C, z=z, backend="ref")
    >>> torch.allclose(out, ref, atol=1e-5)
    True
    >>> first, h1 = selective_scan(
    ...     u[..., :20],
    ...     delta[..., :20],
    ...     A,
    ...     B[..., :20],
    ...     C[..., :20],
    ...     z=z[..., :20],
    ...     return_last_state=True,
    ... )
    >>> rest = selective_scan(
    ...     u[..., 20:],
    ...     delta[..., 20:],
    ...     A,
    ...     B[..., 20:],
    ...     C[..., 20:],
    ...     z=z[..., 20:],
    ...     initial_state=h1,
    ... )
    >>> torch.allclose(torch.cat([first, rest], -1), out, atol=1e-5)
    True
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    grads = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad
        for t in (u, delta, A, B, C, D, z, delta_bias, initial_state)
    )
    backend = resolve_backend(
        backend, u.device, u.dtype, return_last_state and grads
    )
    if initial_state is not None:
        _check_state(initial_state, u, A)
        if backend not in ("cpu", "triton"):
            args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
            y, last = _scan_from(initial_state, *args)
            return (y, last) if return_last_state else y
    if backend == "cuda":
        return _scan_cuda(
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            delta_softplus,
            return_last_state,
        )
    dtype = u.dtype
    B4 = B if B.dim() == 4 else B.unsqueeze(1)
    C4 = C if C.dim() == 4 else C.unsqueeze(1)
    with torch.autocast(u.device.type, enabled=False):
        if backend == "ref":
            y, last = _scan_ref(
                u, delta, A, B4, C4, D, z, delta_bias, delta_softplus
            )
        elif backend in ("triton", "cpu"):
            args = (u, delta, A, B4, C4, D, z, delta_bias, delta_softplus)
            scan = scan_triton if backend == "triton" else scan_cpu
            y, last = scan(*args, initial_state)
        else:
            f32 = lambda t: None if t is None else t.float()  # noqa: E731
            args = (u, delta, A, B4, C4, D, z, delta_bias)
            y, last = scan_torch(*map(f32, args), delta_softplus)
    y = y.to(dtype)
    return (y, last.float()) if return_last_state else y


def _scan_cuda(
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
):
    """mamba-ssm's kernel, with its input contract: delta, z and 4-D contiguous B/C in u's dtype, fp32 A/D/bias.

    Its backward ignores the last state's gradient, so the last state is returned detached.
    """
    B4 = (B if B.dim() == 4 else B.unsqueeze(1)).to(u.dtype).contiguous()
    C4 = (C if C.dim() == 4 else C.unsqueeze(1)).to(u.dtype).contiguous()
    out = _mamba_ssm_scan()(
        u.contiguous(),
        delta.to(u.dtype).contiguous(),
        A.float().contiguous(),
        B4,
        C4,
        None if D is None else D.float(),
        None if z is None else z.to(u.dtype).contiguous(),
        None if delta_bias is None else delta_bias.float(),
        delta_softplus,
        return_last_state,
    )
    return (out[0], out[1].detach()) if return_last_state else out
