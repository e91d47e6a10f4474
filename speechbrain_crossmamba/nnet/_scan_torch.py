"""The ``"torch"`` backend of ``selective_scan``: a time-blocked scan with an analytic backward.

Design (it mirrors mamba-ssm's CUDA kernel; see ``shared/reference/selective-scan-cpu.md``):

* time is processed in cache-sized blocks of ``T`` steps, with the state kept in fp32;
* only the state at each block boundary is saved for backward, so training memory is
  O(b·d·L), never O(b·d·n·L);
* backward recomputes the states of a block and runs the same recurrence in reverse for the
  state gradient ``g_t = C_t·dy_t + a_{t+1}·g_{t+1}``;
* inside a block, when a time step holds few elements (small ``b·d·n``), a two-level scan
  (independent sub-chunks, then a carry pass) replaces the plain loop to cut per-op overhead;
* the log-decay ``Δ·A`` is clamped at ``LOG_DECAY_MIN`` before ``exp`` (no underflow, no
  denormals), unless the inputs show it cannot go below.

Authors
 * speechbrain-crossmamba contributors
"""

import torch

LOG_DECAY_MIN = -80.0
# Elements (b·d·n·T) in one block buffer: 4 MB of fp32. `python benchmarks/nnet_choices.py`
# times it against 2**18 (fwd+bwd, d=512, L=1000-8000: 2**18 took 1.02-1.20x as long on
# 2 cores, 2026-12-06).
_BLOCK_ELEMENTS = 2**20
# With fewer elements per time step, the two-level inner scan beats the plain loop.
_SEQUENTIAL_MIN_ELEMENTS = 2**12
# Batches whose first 32 steps hold more elements than this run in batch slices (short,
# wide scans such as a dual-path model's inter-chunk axis: b=250 rows of L=9 chunks).
_SLICE_ELEMENTS = 2**21


def scan_torch(u, delta, A, B, C, D, z, delta_bias, softplus):
    """Runs :class:`SelectiveScanTorch` in batch slices that keep its buffers in cache.

    ``python benchmarks/nnet_choices.py`` times b=250, d=512, n=16, L=9 fwd+bwd in one piece
    and in slices (2 cores, 2026-12-06: 322 ms in one piece, 215-285 ms in slices of 16 to 64
    rows).

    Arguments
    ---------
    u, delta, A, B, C, D, z, delta_bias, softplus
        As :class:`SelectiveScanTorch` takes them.

    Returns
    -------
    tuple of torch.Tensor
        Output (b, d, L) and last state (b, d, n), like the Function.
    """
    b, d, L = u.shape
    rows = max(1, _SLICE_ELEMENTS // (d * A.shape[-1] * min(L, 32)))
    if b <= rows:
        return SelectiveScanTorch.apply(
            u, delta, A, B, C, D, z, delta_bias, softplus
        )
    outs = [
        SelectiveScanTorch.apply(
            u[i : i + rows],
            delta[i : i + rows],
            A,
            B[i : i + rows],
            C[i : i + rows],
            D,
            None if z is None else z[i : i + rows],
            delta_bias,
            softplus,
        )  # fmt: skip
        for i in range(0, b, rows)
    ]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def _plan(L, E):
    """Returns (block length T, sub-chunk length s) for L steps of E elements each."""
    T = 32
    while T * 2 * E <= _BLOCK_ELEMENTS and T < 4096:
        T *= 2
    T = min(T, L)
    if E >= _SEQUENTIAL_MIN_ELEMENTS or T <= 16:
        return T, T
    s = 4
    while s * s < T:
        s *= 2
    return T, s


def _scan_(a, x, carry, s, work, reverse=False):
    """Solves a linear recurrence in place along dim 0 of ``x``, in sub-chunks of ``s`` steps.

    Forward: ``x[t] += a[t] * x[t-1]`` with ``x[-1] = carry``.
    Reverse: ``x[t] += a[t+1] * x[t+1]`` with ``a[T] * x[T] = carry``.
    ``carry`` may be None (zero). ``a`` is left unchanged; ``work`` is a buffer like ``a``.
    """
    Tp = x.shape[0]
    nsub = Tp // s
    xv = x.view(nsub, s, *x.shape[1:]).unbind(1)
    av = a.view(nsub, s, *a.shape[1:]).unbind(1)
    steps = range(s - 2, -1, -1) if reverse else range(1, s)
    shift = 1 if reverse else -1
    if nsub == 1 and carry is not None:  # plain loop: start from the carry
        if reverse:
            xv[-1].add_(carry)
        else:
            xv[0].addcmul_(av[0], carry)
        carry = None
    for j in steps:
        xv[j].addcmul_(av[j + (1 if reverse else 0)], xv[j + shift])
    if nsub == 1:
        return
    # P[i, j]: product of the decays that carry the state from the sub-chunk's edge to step j.
    pv = work[:Tp].view(nsub, s, *a.shape[1:])
    pl = pv.unbind(1)
    if reverse:
        pl[-1].fill_(1.0)
    else:
        pl[0].copy_(av[0])
    for j in steps:
        torch.mul(pl[j + shift], av[j + (1 if reverse else 0)], out=pl[j])
    xs = x.view(nsub, s, *x.shape[1:])
    a0 = a.view(nsub, s, *a.shape[1:])
    for i in reversed(range(nsub)) if reverse else range(nsub):
        if carry is not None:
            xs[i].addcmul_(pv[i], carry)
        carry = a0[i, 0] * xs[i, 0] if reverse else xs[i, -1]


class _Blocks:
    """Time-major inputs plus reusable (T, b, g, dg, n) block buffers."""

    def __init__(self, uT, dT, A, BT, CT, plan, nbuf):
        self.uT, self.dT, self.A, self.BT, self.CT = uT, dT, A, BT, CT
        self.duT = dT * uT
        self.L = uT.shape[0]
        self.T, self.s = plan
        Tp = -(-self.T // self.s) * self.s
        shape = (Tp,) + uT.shape[1:] + A.shape[-1:]
        self.bufs = [torch.empty(shape, device=uT.device) for _ in range(nbuf)]
        extremes = torch.stack([dT.min(), dT.max()])[:, None] * torch.stack(
            [A.min(), A.max()]
        )
        self.clamp = (
            bool(extremes.min() < LOG_DECAY_MIN) if dT.numel() else False
        )
        self.starts = list(range(0, self.L, self.T))

    def span(self, k):
        """Block ``k``'s first and end steps and its length padded to whole sub-chunks.

        Arguments
        ---------
        k : int
            The block.

        Returns
        -------
        tuple of int
            ``(t0, t1, Tp)``.
        """
        t0 = self.starts[k]
        t1 = min(t0 + self.T, self.L)
        return t0, t1, -(-(t1 - t0) // self.s) * self.s

    def fill(self, k):
        """Writes the decays a_t and the inputs Δu·B of block k.

        Arguments
        ---------
        k : int
            The block.

        Returns
        -------
        tuple of torch.Tensor
            ``(a, x)``, views of the buffers padded to whole sub-chunks.
        """
        t0, t1, Tp = self.span(k)
        Tb = t1 - t0
        a, x = self.bufs[0][:Tp], self.bufs[1][:Tp]
        torch.mul(self.dT[t0:t1, ..., None], self.A, out=a[:Tb])
        if self.clamp:
            a[:Tb].clamp_(min=LOG_DECAY_MIN)
        a[:Tb].exp_()
        torch.mul(
            self.duT[t0:t1, ..., None],
            self.BT[t0:t1, :, :, None, :],
            out=x[:Tb],
        )
        if Tp > Tb:  # padding steps are no-ops: decay 1, input 0
            a[Tb:].fill_(1.0)
            x[Tb:].zero_()
        return a, x


def _bmm(x, y, out):
    """Batched matmul over the leading dims of x (..., i, k) and y (..., k, j), into out."""
    i, j = x.shape[-2], y.shape[-1]
    torch.bmm(
        x.reshape(-1, i, x.shape[-1]),
        y.reshape(-1, y.shape[-2], j),
        out=out.view(-1, i, j),
    )


def _time_major(t, g):
    """(b, d, L) -> contiguous (L, b, g, d // g), which may alias ``t``; None stays None."""
    if t is None:
        return None
    b, d, L = t.shape
    return t.permute(2, 0, 1).reshape(L, b, g, d // g).contiguous()


def _step_sizes(dpre, softplus):
    return torch.nn.functional.softplus(dpre) if softplus else dpre


class SelectiveScanTorch(torch.autograd.Function):
    """The whole scan of ``selective_scan`` in fp32, with D, the gate and softplus fused.

    ``Δ' = softplus(Δ + bias)``, ``h_t = exp(Δ'_t A) h_{t-1} + Δ'_t u_t B_t``,
    ``out_t = (C_t·h_t + D u_t) silu(z_t)``. Shapes: u, delta, z (b, d, L); A (d, n);
    B, C (b, g, n, L); D, delta_bias (d,) or None. Returns out (b, d, L) and the last
    state (b, d, n). Everything runs in time-major (L, b, g, d/g) layout.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus):
        """Runs the scan, keeping only the states at block boundaries for backward.

        Arguments
        ---------
        ctx : object
            The autograd context.
        u, delta, A, B, C, D, z, delta_bias, softplus
            As in the class docstring (fp32).

        Returns
        -------
        tuple of torch.Tensor
            Output (b, d, L) and last state (b, d, n).
        """
        b, d, L = u.shape
        g, n = B.shape[1], B.shape[2]
        uT, dpre, zT = (
            _time_major(u, g),
            _time_major(delta, g),
            _time_major(z, g),
        )
        if (
            delta_bias is not None
        ):  # not in place: dpre may alias the caller's delta
            dpre = dpre + delta_bias.reshape(g, d // g)
        dT = _step_sizes(dpre, softplus)
        BT = B.permute(3, 0, 1, 2).contiguous()
        CT = C.permute(3, 0, 1, 2).contiguous()
        Dg = None if D is None else D.reshape(g, d // g)
        blk = _Blocks(
            uT, dT, A.reshape(g, d // g, n), BT, CT, _plan(L, b * d * n), 3
        )
        yT = torch.empty_like(uT)
        boundaries = torch.zeros(
            (len(blk.starts),) + blk.bufs[0].shape[1:], device=u.device
        )
        h = None
        for k in range(len(blk.starts)):
            t0, t1, _ = blk.span(k)
            if h is not None:
                boundaries[k].copy_(h)
            a, x = blk.fill(k)
            _scan_(a, x, h, blk.s, blk.bufs[2])
            _bmm(x[: t1 - t0], CT[t0:t1, ..., None], yT[t0:t1])
            h = x[t1 - t0 - 1].clone()
        if Dg is not None:
            yT.addcmul_(uT, Dg)
        if zT is not None:
            yT.mul_(torch.nn.functional.silu(zT))
        ctx.save_for_backward(uT, dpre, blk.A, BT, CT, Dg, zT, boundaries)
        ctx.plan, ctx.softplus = (blk.T, blk.s), softplus
        ctx.has_bias = delta_bias is not None
        return yT.reshape(L, b, d).permute(1, 2, 0), h.reshape(b, d, n)

    @staticmethod
    def backward(ctx, dout, dlast):
        """Recomputes each block's states and runs the state gradient in reverse.

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
            One gradient per input of :meth:`forward` (None for ``softplus`` and absent ones).
        """
        uT, dpre, A, BT, CT, Dg, zT, boundaries = ctx.saved_tensors
        L, b, g, dg = uT.shape
        n = A.shape[-1]
        dT = _step_sizes(dpre, ctx.softplus)
        doutT = _time_major(dout, g)
        dyT = doutT  # gradient of y = C·h + D·u
        if zT is not None:
            sig = torch.sigmoid(zT)
            dyT = doutT * zT * sig
            dz = torch.empty_like(zT)
        blk = _Blocks(uT, dT, A, BT, CT, ctx.plan, 4)
        du, ddelta = torch.empty_like(uT), torch.empty_like(dT)
        dB, dC = torch.empty_like(BT), torch.empty_like(CT)
        dA = torch.zeros_like(A)
        carry = None if dlast is None else dlast.reshape(b, g, dg, n).float()
        for k in reversed(range(len(blk.starts))):
            t0, t1, Tp = blk.span(k)
            Tb = t1 - t0
            h0 = boundaries[k]
            a, H = blk.fill(k)
            work, grad = blk.bufs[2][:Tp], blk.bufs[3][:Tp]
            _scan_(a, H, h0, blk.s, work)
            if zT is not None:  # d out / d z = y * silu'(z)
                y = dz[t0:t1]
                _bmm(H[:Tb], CT[t0:t1, ..., None], y)
                if Dg is not None:
                    y.addcmul_(uT[t0:t1], Dg)
                s_z = sig[t0:t1]
                y.mul_(doutT[t0:t1]).mul_(s_z * (1 + zT[t0:t1] * (1 - s_z)))
            torch.mul(
                dyT[t0:t1, ..., None], CT[t0:t1, :, :, None, :], out=grad[:Tb]
            )
            if Tp > Tb:
                grad[Tb:].zero_()
            _scan_(a, grad, carry, blk.s, work, reverse=True)
            a, H, gt = a[:Tb], H[:Tb], grad[:Tb]
            carry = a[0] * gt[0]
            # d log a_t = g_t * a_t * h_{t-1}
            dloga = torch.mul(gt, a, out=a)
            dloga[1:].mul_(H[:-1])
            dloga[0].mul_(h0)
            dA += torch.mul(dloga, dT[t0:t1, ..., None], out=work[:Tb]).sum(
                (0, 1)
            )
            torch.sum(torch.mul(dloga, A, out=work[:Tb]), -1, out=ddelta[t0:t1])
            gB = torch.empty_like(dT[t0:t1])
            _bmm(gt, BT[t0:t1, ..., None], gB)
            ddelta[t0:t1].addcmul_(uT[t0:t1], gB)
            torch.mul(dT[t0:t1], gB, out=du[t0:t1])
            _bmm(blk.duT[t0:t1, :, :, None, :], gt, dB[t0:t1])
            _bmm(dyT[t0:t1, :, :, None, :], H, dC[t0:t1])
        dD = None
        if Dg is not None:
            du.addcmul_(dyT, Dg)
            dD = (dyT * uT).sum((0, 1)).reshape(-1)
        if ctx.softplus:
            ddelta.mul_(torch.sigmoid(dpre))
        dbias = ddelta.sum((0, 1)).reshape(-1) if ctx.has_bias else None
        d = g * dg
        back = lambda t: t.reshape(L, b, d).permute(1, 2, 0)  # noqa: E731
        return (
            back(du),
            back(ddelta),
            dA.reshape(d, n),
            dB.permute(1, 2, 3, 0),
            dC.permute(1, 2, 3, 0),
            dD,
            None if zT is None else back(dz),
            dbias,
            None,
        )
