"""The Triton kernels of the ``"triton"`` selective-scan backend (see :mod:`._scan_triton`).

``_fwd_kernel`` and ``_bwd_kernel`` are plain functions here; :func:`kernels` compiles them
with ``triton.jit`` for CUDA tensors, or wraps them in Triton's interpreter for CPU tensors.
Each program handles one batch row and ``BLOCK_D`` channels of one group; it keeps their state
(``BLOCK_D`` x ``BLOCK_N``, fp32) in registers and walks the sequence in blocks of ``BLOCK_T``
steps, each an associative scan of ``(exp(Δ'A), Δ'uB)`` along time.

Authors
 * speechbrain-crossmamba contributors
"""

import functools

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # CPU-only torch wheels come without Triton
    triton = tl = None


if triton is not None:

    @triton.jit
    def _combine(a1, x1, a2, x2):
        """(a1, x1) then (a2, x2): h -> a2 (a1 h + x1) + x2."""
        return a1 * a2, a2 * x1 + x2

    @triton.jit
    def _step_sizes(
        dl_ptr,
        bias,
        rows,
        t,
        mask,
        HAS_BIAS: tl.constexpr,
        SOFTPLUS: tl.constexpr,
    ):
        """Δ' on a (BLOCK_D, BLOCK_T) tile: Δ + bias, softplus; 0 where masked (so exp(Δ'A) = 1)."""
        dt = tl.load(
            dl_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0
        ).to(tl.float32)
        if HAS_BIAS:
            dt += bias[:, None]
        if SOFTPLUS:
            dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
        return tl.where(mask, dt, 0.0)

    @triton.jit
    def _block_states(
        u_ptr,
        dl_ptr,
        B_ptr,
        C_ptr,
        A,
        bias,
        h,
        rows,
        bc,
        offs_n,
        t,
        mask_n,
        L,
        HAS_BIAS: tl.constexpr,
        SOFTPLUS: tl.constexpr,
    ):
        """One time block: loads its inputs and returns (u, Δ', Δ'uB, B, C, states, Δ before softplus)."""
        mt = t < L
        m2 = mt[None, :]
        u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=m2, other=0.0).to(
            tl.float32
        )
        dt = _step_sizes(dl_ptr, bias, rows, t, m2, HAS_BIAS, SOFTPLUS)
        mnt = mask_n[:, None] & m2
        Bt = tl.load(
            B_ptr + bc + offs_n[:, None] * L + t[None, :], mask=mnt, other=0.0
        ).to(tl.float32)
        Ct = tl.load(
            C_ptr + bc + offs_n[:, None] * L + t[None, :], mask=mnt, other=0.0
        ).to(tl.float32)
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        x = (dt * u)[:, None, :] * Bt[None, :, :]
        P, X = tl.associative_scan((a, x), 2, _combine)
        hs = P * h[:, :, None] + X
        return u, dt, a, x, Bt, Ct, hs

    @triton.jit
    def _program_tiles(
        pd, A_ptr, bias_ptr, n, dpg,
        HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
    ):  # fmt: skip
        """A program's channels, their group, the state and time offsets, A and delta_bias."""
        ch = pd * BLOCK_D + tl.arange(0, BLOCK_D)
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < n
        A = tl.load(
            A_ptr + ch[:, None] * n + offs_n[None, :],
            mask=mask_n[None, :],
            other=0.0,
        )
        bias = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + ch).to(tl.float32)
        offs_t = tl.arange(0, BLOCK_T)
        return ch, (pd * BLOCK_D) // dpg, offs_n, offs_t, mask_n, A, bias

    def _fwd_kernel(
        u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr,
        out_ptr, states_ptr, last_ptr,
        d, L, n, dpg, G, nchunks,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
        SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
    ):  # fmt: skip
        pb, pd = tl.program_id(0), tl.program_id(1)
        ch, grp, offs_n, offs_t, mask_n, A, bias = _program_tiles(
            pd, A_ptr, bias_ptr, n, dpg, HAS_BIAS, BLOCK_D, BLOCK_N, BLOCK_T
        )
        mdn = mask_n[None, :]
        rows = (pb * d + ch).to(tl.int64) * L
        bc = (pb * G + grp).to(tl.int64) * n * L
        sn = (pb * d + ch).to(tl.int64)[:, None] * n + offs_n[None, :]
        if HAS_H0:
            h = tl.load(h0_ptr + sn, mask=mdn, other=0.0).to(tl.float32)
        else:
            h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        st = (pb * d + ch).to(tl.int64)[:, None] * nchunks * n + offs_n[None, :]
        k = 0
        while (
            k < nchunks
        ):  # not range(): Triton 3.6's interpreter fails on it with numpy 2
            t = k * BLOCK_T + offs_t
            tl.store(states_ptr + st + k * n, h, mask=mdn)
            u, dt, a, x, Bt, Ct, hs = _block_states(
                u_ptr, dl_ptr, B_ptr, C_ptr, A, bias, h, rows, bc, offs_n, t, mask_n, L, HAS_BIAS, SOFTPLUS
            )  # fmt: skip
            y = tl.sum(hs * Ct[None, :, :], 1)
            if HAS_D:
                y += tl.load(D_ptr + ch)[:, None] * u
            m2 = (t < L)[None, :]
            if HAS_Z:
                z = tl.load(
                    z_ptr + rows[:, None] + t[None, :], mask=m2, other=0.0
                ).to(tl.float32)
                y = y * z * tl.sigmoid(z)
            ptrs = out_ptr + rows[:, None] + t[None, :]
            tl.store(ptrs, y.to(out_ptr.dtype.element_ty), mask=m2)
            h = tl.sum(
                tl.where(offs_t[None, None, :] == BLOCK_T - 1, hs, 0.0), 2
            )
            k += 1
        tl.store(last_ptr + sn, h, mask=mdn)

    def _bwd_kernel(
        u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, states_ptr, dout_ptr, dlast_ptr,
        du_ptr, ddl_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, dh0_ptr,
        d, L, n, dpg, G, nchunks,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_DLAST: tl.constexpr,
        SOFTPLUS: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
    ):  # fmt: skip
        pb, pd = tl.program_id(0), tl.program_id(1)
        nblk = tl.num_programs(1)
        ch, grp, offs_n, offs_t, mask_n, A, bias = _program_tiles(
            pd, A_ptr, bias_ptr, n, dpg, HAS_BIAS, BLOCK_D, BLOCK_N, BLOCK_T
        )
        mdn = mask_n[None, :]
        Dv = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_D:
            Dv = tl.load(D_ptr + ch)
        rows = (pb * d + ch).to(tl.int64) * L
        bc = (pb * G + grp).to(tl.int64) * n * L
        part = (
            (pb * nblk + pd).to(tl.int64) * n * L
        )  # this program's slice of dB, dC partials
        sn = (pb * d + ch).to(tl.int64)[:, None] * n + offs_n[None, :]
        st = (pb * d + ch).to(tl.int64)[:, None] * nchunks * n + offs_n[None, :]
        if HAS_DLAST:
            carry = tl.load(dlast_ptr + sn, mask=mdn, other=0.0).to(tl.float32)
        else:
            carry = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        dA = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        dD = tl.zeros((BLOCK_D,), tl.float32)
        dbias = tl.zeros((BLOCK_D,), tl.float32)
        k = nchunks - 1
        while k >= 0:
            t = k * BLOCK_T + offs_t
            mt = t < L
            m2 = mt[None, :]
            h = tl.load(states_ptr + st + k * n, mask=mdn, other=0.0)
            u, dt, a, x, Bt, Ct, hs = _block_states(
                u_ptr, dl_ptr, B_ptr, C_ptr, A, bias, h, rows, bc, offs_n, t, mask_n, L, HAS_BIAS, SOFTPLUS
            )  # fmt: skip
            tile = rows[:, None] + t[None, :]
            gy = tl.load(dout_ptr + tile, mask=m2, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + tile, mask=m2, other=0.0).to(tl.float32)
                sz = tl.sigmoid(z)
                y = tl.sum(hs * Ct[None, :, :], 1)
                if HAS_D:
                    y += Dv[:, None] * u
                tl.store(
                    dz_ptr + tile, gy * y * sz * (1.0 + z * (1.0 - sz)), mask=m2
                )
                gy = gy * z * sz
            # exp(Δ'_{t+1} A) inside the block; the step after the block enters through carry
            t1 = t + 1
            m1 = ((offs_t < BLOCK_T - 1) & (t1 < L))[None, :]
            a_next = tl.exp(
                _step_sizes(dl_ptr, bias, rows, t1, m1, HAS_BIAS, SOFTPLUS)[
                    :, None, :
                ]
                * A[:, :, None]
            )
            last = tl.minimum(L - k * BLOCK_T, BLOCK_T) - 1
            gx = gy[:, None, :] * Ct[None, :, :]
            gx += tl.where(
                offs_t[None, None, :] == last, carry[:, :, None], 0.0
            )
            _, dh = tl.associative_scan((a_next, gx), 2, _combine, reverse=True)
            ah = hs - x  # exp(Δ'_t A) h_{t-1}
            dhdt = dh * dt[:, None, :]
            ddt = tl.sum(
                dh * (A[:, :, None] * ah + u[:, None, :] * Bt[None, :, :]), 1
            )
            dA += tl.sum(dhdt * ah, 2)
            du = tl.sum(dhdt * Bt[None, :, :], 1)
            if HAS_D:
                du += Dv[:, None] * gy
                dD += tl.sum(gy * u, 1)
            if SOFTPLUS:
                pre = tl.load(dl_ptr + tile, mask=m2, other=0.0).to(tl.float32)
                if HAS_BIAS:
                    pre += bias[:, None]
                ddt = ddt * tl.sigmoid(pre)
            ddt = tl.where(m2, ddt, 0.0)
            if HAS_BIAS:
                dbias += tl.sum(ddt, 1)
            tl.store(du_ptr + tile, du, mask=m2)
            tl.store(ddl_ptr + tile, ddt, mask=m2)
            pnt = part + offs_n[:, None] * L + t[None, :]
            mnt = mask_n[:, None] & m2
            tl.store(dB_ptr + pnt, tl.sum(dhdt * u[:, None, :], 0), mask=mnt)
            tl.store(dC_ptr + pnt, tl.sum(gy[:, None, :] * hs, 0), mask=mnt)
            carry = tl.sum(tl.where(offs_t[None, None, :] == 0, a * dh, 0.0), 2)
            k -= 1
        tl.store(dh0_ptr + sn, carry, mask=mdn)
        tl.store(dA_ptr + sn, dA, mask=mdn)
        row = (pb * d + ch).to(tl.int64)
        if HAS_D:
            tl.store(dD_ptr + row, dD)
        if HAS_BIAS:
            tl.store(dbias_ptr + row, dbias)


@functools.cache
def kernels():
    """The forward and backward kernels, as ``triton.jit`` makes them.

    With ``TRITON_INTERPRET=1`` set before triton was imported, ``triton.jit`` (here and in
    ``triton.language`` itself) makes interpreted functions, which run on CPU tensors.

    Returns
    -------
    tuple
        ``(forward, backward)``, each launched as ``kernel[grid](...)``.
    """
    return triton.jit(_fwd_kernel), triton.jit(_bwd_kernel)


def interpreted():
    """Whether triton was imported in interpreter mode (``TRITON_INTERPRET=1``).

    Returns
    -------
    bool
        True when the kernels run in Triton's interpreter.
    """
    return triton is not None and isinstance(_combine, InterpretedFunction)
