"""The argument checks of :func:`~.selective_scan.selective_scan`: one-line ``ValueError`` s.

``_check_shapes`` checks the shapes of ``u``, ``delta``, ``A``, ``B``, ``C``, ``D``, ``z`` and
``delta_bias`` against one another (mamba-ssm's contract, grouped ``B`` and ``C`` included);
``_check_state`` checks an ``initial_state``.

Authors
 * speechbrain-crossmamba contributors
"""


def _check_state(h0, u, A):
    b, d, n = u.shape[0], u.shape[1], A.shape[1]
    if h0.shape != (b, d, n):
        raise ValueError(
            f"initial_state must be (b={b}, d={d}, n={n}), got {tuple(h0.shape)}"
        )


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
            raise ValueError(
                f"{name} has {t.shape[1]} groups, which do not divide d={d}"
            )
    groups = [t.shape[1] if t.dim() == 4 else 1 for t in (B, C)]
    if groups[0] != groups[1]:
        raise ValueError(
            f"B and C must have the same number of groups, got {groups[0]} and {groups[1]} "
            "(a 3-D B or C is one group)"
        )
    if z is not None and z.shape != u.shape:
        raise ValueError(
            f"z must be (b, d, L) = {tuple(u.shape)}, got {tuple(z.shape)}"
        )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"{name} must be (d={d},), got {tuple(t.shape)}")
