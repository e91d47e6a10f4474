"""The selective scan of Mamba (S6), with one entry point and named backends.

``selective_scan`` has the semantics, argument order and shapes of mamba-ssm's
``selective_scan_fn``::

    Δ'_t  = softplus(Δ_t + delta_bias)            (if delta_softplus)
    h_t   = exp(Δ'_t ⊙ A) ⊙ h_{t-1} + (Δ'_t ⊙ u_t) ⊗ B_t,     h_0 = 0
    y_t   = h_t · C_t + D ⊙ u_t
    out_t = y_t ⊙ silu(z_t)                        (if z is given)

Backends:

* ``"cuda"``: mamba-ssm's fused kernel (only when it imports and the tensors are on CUDA);
* ``"cpu"``: our fused C++ kernel (``csrc/selective_scan.cpp``), forward and backward, built
  on first use and cached (CPU tensors; see :mod:`._cpu_kernels`);
* ``"torch"``: our time-blocked pure-PyTorch scan with an analytic backward (CPU and GPU);
* ``"ref"``: a plain sequential loop in float64, the oracle for tests;
* ``"auto"``: ``"cuda"`` when usable, else ``"cpu"`` for CPU tensors when the kernel builds
  (if it cannot be built, a warning names the reason once), else ``"torch"``.

The default backend can be forced with the environment variable
``SB_CROSSMAMBA_SCAN_BACKEND`` or with :func:`set_default_backend`.

Authors
 * speechbrain-crossmamba contributors
"""

import functools
import importlib
import os

import torch
import torch.nn.functional as F

from speechbrain_crossmamba.nnet._cpu_kernels import cpu_kernels, cpu_kernels_error
from speechbrain_crossmamba.nnet._scan_cpu import scan_cpu
from speechbrain_crossmamba.nnet._scan_torch import LOG_DECAY_MIN, scan_torch

BACKENDS = ("auto", "cuda", "cpu", "torch", "ref")
ENV_VAR = "SB_CROSSMAMBA_SCAN_BACKEND"
_default_backend = None


def set_default_backend(backend):
    """Sets the backend used when ``selective_scan`` is called with ``backend="auto"``.

    Arguments
    ---------
    backend : str or None
        One of ``"auto"``, ``"cuda"``, ``"cpu"``, ``"torch"``, ``"ref"``; ``None`` restores the default
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
    """Returns the backend that ``backend="auto"`` resolves through (before device checks)."""
    if _default_backend is not None:
        return _default_backend
    return _check_name(os.environ.get(ENV_VAR, "auto") or "auto")


def _check_name(backend):
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown selective-scan backend {backend!r}; choose one of {BACKENDS}"
        )
    return backend


@functools.lru_cache(maxsize=None)
def optional_cuda_op(module, name):
    """Returns ``module.name`` from an optional CUDA package, or None when it does not import.

    mamba-ssm and causal-conv1d raise ImportError or OSError when their compiled extension
    is missing or broken; the result is cached so the import is tried once.

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
    return optional_cuda_op("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn")


def resolve_backend(backend, device):
    """Returns the concrete backend (``"cuda"``, ``"cpu"``, ``"torch"`` or ``"ref"``) for ``device``.

    Example
    -------
    >>> resolve_backend("auto", torch.device("cpu")) in ("cpu", "torch")  # "torch" if no compiler
    True
    """
    backend = _check_name(backend)
    if backend == "auto":
        backend = get_default_backend()
    if backend == "auto":
        if device.type == "cuda" and _mamba_ssm_scan() is not None:
            return "cuda"
        return "cpu" if device.type == "cpu" and cpu_kernels() is not None else "torch"
    if backend == "cpu":
        if device.type != "cpu":
            raise RuntimeError(f"selective-scan backend 'cpu' needs CPU tensors, got {device.type}")
        if cpu_kernels() is None:
            raise RuntimeError(
                f"selective-scan backend 'cpu' is unavailable: {cpu_kernels_error()}"
            )
    if backend == "cuda":
        if device.type != "cuda":
            raise RuntimeError(
                f"selective-scan backend 'cuda' needs CUDA tensors, got {device.type}"
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
        Also return the last state h_L, shape (b, d, n) (fp32).
    backend : str
        ``"auto"``, ``"cuda"``, ``"cpu"``, ``"torch"`` or ``"ref"``.
    initial_state : torch.Tensor, optional
        State h_0 (b, d, n) to start from instead of zero: scanning a sequence in consecutive
        chunks, each from the last state of the one before, gives the scan of the whole. The
        ``"cpu"`` kernel takes it natively (with its gradient); the other backends run the
        recurrence step by step, with an O(b·d·n·L) buffer: that path is meant for short
        streaming chunks.

    Returns
    -------
    out : torch.Tensor
        Shape (b, d, L), dtype of ``u``.
    last_state : torch.Tensor
        Only if ``return_last_state``.

    Example
    -------
    >>> b, d, n, L = 2, 8, 4, 50
    >>> u, delta, z = torch.randn(b, d, L), torch.rand(b, d, L), torch.randn(b, d, L)
    >>> A = -torch.rand(d, n)
    >>> B, C = torch.randn(b, n, L), torch.randn(b, n, L)
    >>> out, h = selective_scan(u, delta, A, B, C, z=z, return_last_state=True)
    >>> out.shape, h.shape
    (torch.Size([2, 8, 50]), torch.Size([2, 8, 4]))
    >>> ref = selective_scan(u, delta, A, B, C, z=z, backend="ref")
    >>> torch.allclose(out, ref, atol=1e-5)
    True
    >>> first, h1 = selective_scan(u[..., :20], delta[..., :20], A, B[..., :20], C[..., :20],
    ...                            z=z[..., :20], return_last_state=True)
    >>> rest = selective_scan(u[..., 20:], delta[..., 20:], A, B[..., 20:], C[..., 20:],
    ...                       z=z[..., 20:], initial_state=h1)
    >>> torch.allclose(torch.cat([first, rest], -1), out, atol=1e-5)
    True
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    backend = resolve_backend(backend, u.device)
    if initial_state is not None:
        _check_state(initial_state, u, A)
        if backend != "cpu":
            args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
            y, last = _scan_from(initial_state, *args)
            return (y, last) if return_last_state else y
    if backend == "cuda":
        return _scan_cuda(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    dtype = u.dtype
    B4 = B if B.dim() == 4 else B.unsqueeze(1)
    C4 = C if C.dim() == 4 else C.unsqueeze(1)
    with torch.autocast(u.device.type, enabled=False):
        if backend == "ref":
            y, last = _scan_ref(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus)
        elif backend == "cpu":
            args = (u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, initial_state)
            y, last = scan_cpu(*args)
        else:
            f32 = lambda t: None if t is None else t.float()  # noqa: E731
            args = (u, delta, A, B4, C4, D, z, delta_bias)
            y, last = scan_torch(*map(f32, args), delta_softplus)
    y = y.to(dtype)
    return (y, last.float()) if return_last_state else y


def _scan_from(h0, u, delta, A, B, C, D, z, delta_bias, softplus):
    """The recurrence from state ``h0``, one step at a time, in fp32, time-major.

    Streaming chunks are short: this loop is 2-3x faster there than a blocked scan plus a
    correction term for the initial state (measured at d=128, n=16, L=8 on 2 cores).
    """
    b, d, L = u.shape
    n = A.shape[1]
    with torch.autocast(u.device.type, enabled=False):
        dt = delta.float() if delta_bias is None else delta.float() + delta_bias.float()[:, None]
        dt = (_softplus(dt) if softplus else dt).permute(2, 0, 1).contiguous()  # (L, b, d)
        C4 = C if C.dim() == 4 else C.unsqueeze(1)
        B4 = B if B.dim() == 4 else B.unsqueeze(1)
        g = B4.shape[1]
        decay = torch.exp((dt[..., None] * A.float()).clamp_(min=LOG_DECAY_MIN)).view(L, b, g, d // g, n)
        BT = B4.float().permute(3, 0, 1, 2).contiguous()[:, :, :, None, :]  # (L, b, g, 1, n)
        uT = u.float().permute(2, 0, 1).contiguous()
        x = (dt * uT).view(L, b, g, d // g, 1) * BT  # time-major inputs
        states, h = [], h0.float().view(1, b, g, d // g, n)
        # out of place, on size-1 slices: an exporter traces it to few plain ops (no scatters)
        for x_t, a_t in zip(x.split(1), decay.split(1)):
            h = torch.addcmul(x_t, a_t, h)
            states.append(h)
        h = torch.cat(states)
        CT = C4.float().permute(3, 0, 1, 2)[..., None]  # (L, b, g, n, 1)
        y = torch.matmul(h, CT).reshape(L, b, d).permute(1, 2, 0)
        if D is not None:
            y = y + D.float()[:, None] * u.float()
        if z is not None:
            y = y * F.silu(z.float())
    return y.to(u.dtype), h[-1].reshape(b, d, n).clone()


def _softplus(x):
    """``F.softplus``; in an exported graph as Exp and Log (ONNX Runtime's Softplus operator is
    scalar code: 90 us for 5.6k values, 8 ms chunks at 44.1 kHz)."""
    if torch.compiler.is_exporting():
        return torch.where(x > 20.0, x, torch.log(1.0 + torch.exp(x)))
    return F.softplus(x)


def _check_state(h0, u, A):
    b, d, n = u.shape[0], u.shape[1], A.shape[1]
    if h0.shape != (b, d, n):
        raise ValueError(f"initial_state must be (b={b}, d={d}, n={n}), got {tuple(h0.shape)}")


def _check_shapes(u, delta, A, B, C, D, z, delta_bias):
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(
            f"u and delta must both be (b, d, L), got {tuple(u.shape)} and {tuple(delta.shape)}"
        )
    b, d, L = u.shape
    if L == 0:
        raise ValueError("selective_scan got an empty sequence (L = 0)")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d={d}, n), got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        ok = t.dim() == 3 and t.shape == (b, n, L)
        ok = ok or (t.dim() == 4 and t.shape[::2] == (b, n) and t.shape[3] == L)
        if not ok:
            raise ValueError(
                f"{name} must be (b={b}, n={n}, L={L}) or (b, g, n, L), got {tuple(t.shape)}"
            )
        if t.dim() == 4 and d % t.shape[1] != 0:
            raise ValueError(f"{name} has {t.shape[1]} groups, which do not divide d={d}")
    if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
        raise ValueError("B and C must have the same number of groups")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must be (b, d, L) = {tuple(u.shape)}, got {tuple(z.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"{name} must be (d={d},), got {tuple(t.shape)}")


def _scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """The plain sequential recurrence in float64 (the oracle); B, C are (b, g, n, L)."""
    u, delta, A, B, C, D, z, delta_bias = (
        None if t is None else t.double() for t in (u, delta, A, B, C, D, z, delta_bias)
    )
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    b, d, L = u.shape
    g = B.shape[1]
    Bd = B.repeat_interleave(d // g, dim=1)  # (b, d, n, L)
    Cd = C.repeat_interleave(d // g, dim=1)
    dA = torch.exp(delta[:, :, None, :] * A[None, :, :, None])  # (b, d, n, L)
    dBu = (delta * u)[:, :, None, :] * Bd
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for a_t, x_t, c_t in zip(dA.unbind(-1), dBu.unbind(-1), Cd.unbind(-1)):
        h = a_t * h + x_t
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y, h


def _scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """mamba-ssm's kernel, with its input contract: 4-D contiguous B/C in u's dtype, fp32 A/D/bias."""
    fn = _mamba_ssm_scan()
    B4 = (B if B.dim() == 4 else B.unsqueeze(1)).to(u.dtype).contiguous()
    C4 = (C if C.dim() == 4 else C.unsqueeze(1)).to(u.dtype).contiguous()
    return fn(
        u.contiguous(),
        delta.contiguous(),
        A.float().contiguous(),
        B4,
        C4,
        None if D is None else D.float(),
        None if z is None else z.contiguous(),
        None if delta_bias is None else delta_bias.float(),
        delta_softplus,
        return_last_state,
    )


def hidden_attention(delta, A, B, C, delta_bias=None, delta_softplus=False):
    """Returns the dense hidden-attention matrix α of a selective scan (float64).

    ``α[b, d, t, s] = Σ_n C_t[n] · exp(A[d, n] · Σ_{k=s+1..t} Δ'_k) · Δ'_s · B_s[n]`` for s ≤ t
    and 0 above the diagonal, so that the scan gives ``y = α·u + D⊙u``. Memory is
    O(b·d·n·L²): use it on short sequences, for visualisation and tests.

    Arguments
    ---------
    delta, A, B, C, delta_bias, delta_softplus
        As in :func:`selective_scan`.

    Returns
    -------
    alpha : torch.Tensor
        Shape (b, d, L, L), indexed [batch, channel, query time t, key time s].

    Example
    -------
    >>> b, d, n, L = 1, 4, 3, 6
    >>> u, delta = torch.randn(b, d, L), torch.rand(b, d, L)
    >>> A, B, C = -torch.rand(d, n), torch.randn(b, n, L), torch.randn(b, n, L)
    >>> alpha = hidden_attention(delta, A, B, C)
    >>> y = torch.einsum("bdts,bds->bdt", alpha, u.double())
    >>> torch.allclose(y.float(), selective_scan(u, delta, A, B, C), atol=1e-5)
    True
    """
    delta, A, B, C = (t.double() for t in (delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    d, L = delta.shape[1], delta.shape[2]
    B4 = B if B.dim() == 4 else B.unsqueeze(1)
    C4 = C if C.dim() == 4 else C.unsqueeze(1)
    Bd = B4.repeat_interleave(d // B4.shape[1], dim=1)  # (b, d, n, L)
    Cd = C4.repeat_interleave(d // C4.shape[1], dim=1)
    cum = delta.cumsum(-1)  # S_t = Σ_{k≤t} Δ'_k
    gap = cum[:, :, :, None] - cum[:, :, None, :]  # S_t - S_s: (b, d, t, s)
    causal = torch.ones(L, L, dtype=torch.bool, device=delta.device).tril()
    gap = gap.masked_fill(~causal, float("inf"))
    logdecay = (A[None, :, :, None, None] * gap[:, :, None]).clamp(min=LOG_DECAY_MIN)
    decay = torch.exp(logdecay).masked_fill(~causal, 0.0)  # (b, d, n, t, s)
    key = delta[:, :, None, :] * Bd  # (b, d, n, s)
    return torch.einsum("bdnt,bdnts,bdns->bdts", Cd, decay, key)
