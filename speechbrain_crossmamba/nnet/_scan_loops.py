"""The selective scan written out plainly: step-by-step recurrences, and its dense matrix form.

- ``_scan_ref``: the sequential recurrence in float64, the oracle of the ``"ref"`` backend;
- ``_scan_from``: the recurrence from a given state in fp32, one step at a time, the path of
  every backend but ``"cpu"`` when :func:`~.selective_scan.selective_scan` gets an
  ``initial_state`` (short streaming chunks; exported to ONNX);
- :func:`hidden_attention`: the dense hidden-attention matrix of a scan, for visualisation
  and tests (re-exported by :mod:`.selective_scan`).

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn.functional as F

from speechbrain_crossmamba.nnet._scan_torch import LOG_DECAY_MIN


def _scan_from(h0, u, delta, A, B, C, D, z, delta_bias, softplus):
    """The recurrence from state ``h0``, one step at a time, in fp32, time-major.

    Streaming chunks are short: a per-step loop suits them better than a blocked scan plus a
    correction term for the initial state.
    """
    b, d, L = u.shape
    n = A.shape[1]
    with torch.autocast(u.device.type, enabled=False):
        dt = (
            delta.float()
            if delta_bias is None
            else delta.float() + delta_bias.float()[:, None]
        )
        dt = (
            (_softplus(dt) if softplus else dt).permute(2, 0, 1).contiguous()
        )  # (L, b, d)
        C4 = C if C.dim() == 4 else C.unsqueeze(1)
        B4 = B if B.dim() == 4 else B.unsqueeze(1)
        g = B4.shape[1]
        decay = torch.exp(
            (dt[..., None] * A.float()).clamp_(min=LOG_DECAY_MIN)
        ).view(L, b, g, d // g, n)
        BT = (
            B4.float().permute(3, 0, 1, 2).contiguous()[:, :, :, None, :]
        )  # (L, b, g, 1, n)
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
    scalar code; docs/streaming.md records the graph's time with this)."""
    if torch.compiler.is_exporting():
        return torch.where(x > 20.0, x, torch.log(1.0 + torch.exp(x)))
    return F.softplus(x)


def _scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """The plain sequential recurrence in float64 (the oracle); B, C are (b, g, n, L)."""
    u, delta, A, B, C, D, z, delta_bias = (
        None if t is None else t.double()
        for t in (u, delta, A, B, C, D, z, delta_bias)
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
    >>> from speechbrain_crossmamba.nnet.selective_scan import selective_scan
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
    logdecay = (A[None, :, :, None, None] * gap[:, :, None]).clamp(
        min=LOG_DECAY_MIN
    )
    decay = torch.exp(logdecay).masked_fill(~causal, 0.0)  # (b, d, n, t, s)
    key = delta[:, :, None, :] * Bd  # (b, d, n, s)
    return torch.einsum("bdnt,bdnts,bdns->bdts", Cd, decay, key)
