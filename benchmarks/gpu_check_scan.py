"""The agreement section of ``benchmarks/gpu_check.py``: scan backends against an oracle.

Each backend's output y and its gradients (u, delta, A, B, C, D, z, delta_bias; delta_softplus
on, under one random cotangent) against those of the oracle on the same input values: the
float64 ``"ref"`` loop, or the fp32 ``"torch"`` backend where ``ref`` is too slow. A backend
that cannot run on the device is a ``skipped`` or ``unavailable`` row, one that raises an
``error`` row: never a crash.

Authors
 * speechbrain-crossmamba contributors
"""

import os
import time

import torch
from gpu_check_helpers import free_memory, one_line, predict

from speechbrain_crossmamba.nnet import selective_scan as ss

# (name, b, d, n, L, oracle): d = 2 N (expand 2), n = d_state; see gpu_check.py's docstring
SCAN_SHAPES = [
    ("default intra-chunk", 48, 128, 16, 50, "ref"),
    ("default inter-chunk", 200, 128, 16, 12, "ref"),
    ("paper intra-chunk", 34, 512, 16, 250, "ref"),
    ("paper inter-chunk", 250, 512, 16, 34, "ref"),
    ("paper single-path 8 s", 1, 512, 16, 8000, "ref"),
    ("paper single-path 32 s", 1, 512, 16, 32000, "torch"),
]
SCAN_BACKENDS = ("triton", "torch", "cuda")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# max relative error of y, of every gradient; fp32: the CPU tests' 1e-4 / 1e-3, doubled
TOLERANCES = {"float32": (2e-4, 2e-3), "bfloat16": (2e-2, 5e-2)}


def scan_inputs(b, d, n, L, dtype, device, seed=0):
    """Scan inputs as a Mamba layer makes them (softplus Δ near 0.05, S4D-real A).

    Unlike ``benchmarks/scan.py``'s, D and delta_bias are random, so their paths count.

    Arguments
    ---------
    b, d, n, L : int
        Batch, channels, state size, length.
    dtype : torch.dtype
        Of the activations u, delta, B, C, z; A, D and delta_bias stay fp32.
    device : torch.device
        Where the tensors go.
    seed : int
        Of the generator.

    Returns
    -------
    dict
        The keyword arguments of ``selective_scan``.
    """
    g = torch.Generator().manual_seed(seed)
    out = {k: torch.randn(b, d, L, generator=g) for k in ("u", "delta", "z")}
    out.update({k: torch.randn(b, n, L, generator=g) for k in ("B", "C")})
    out["delta"] -= 3.0
    out = {k: v.to(device=device, dtype=dtype) for k, v in out.items()}
    params = {
        "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),
        "D": torch.randn(d, generator=g),
        "delta_bias": 0.5 * torch.randn(d, generator=g),
    }
    return out | {k: v.to(device) for k, v in params.items()}


def scan_outputs(backend, inputs, cotangent, dtype=None):
    """Runs one scan, forward and backward.

    Arguments
    ---------
    backend : str
        A ``selective_scan`` backend.
    inputs : dict
        From :func:`scan_inputs`.
    cotangent : torch.Tensor
        The gradient of y, (b, d, L).
    dtype : torch.dtype, optional
        Cast every input to this first (the oracles' float64 or float32).

    Returns
    -------
    dict
        ``y`` and ``d<name>``, the gradient of each input.
    """
    leaves = {
        k: v.detach().to(dtype or v.dtype).requires_grad_()
        for k, v in inputs.items()
    }
    y = ss.selective_scan(**leaves, delta_softplus=True, backend=backend)
    grads = torch.autograd.grad(y, list(leaves.values()), cotangent.to(y.dtype))
    return {"y": y.detach()} | {f"d{k}": g for k, g in zip(leaves, grads)}


def compare(got, want):
    """Max abs error of every tensor, and relative: over the oracle's max abs.

    Example
    -------
    >>> compare(
    ...     {"y": torch.tensor([1.0, 2.5])}, {"y": torch.tensor([1.0, 2.0])}
    ... )
    {'y': {'abs': 0.5, 'rel': 0.25}}
    """
    errors = {}
    for key, w in want.items():
        w = w.double()
        err = (got[key].double() - w).abs().max().item()
        scale = max(w.abs().max().item(), 1e-30)
        errors[key] = {"abs": err, "rel": err / scale}
    return errors


def unusable(backend, device):
    """Why ``backend`` cannot run on ``device``, as (status, reason), or None if it can.

    Example
    -------
    >>> unusable("cuda", torch.device("cpu"))
    ('skipped', 'needs CUDA tensors')
    """
    if backend not in ss.BACKENDS:
        return "unavailable", f"{backend!r} is not in selective_scan.BACKENDS"
    if backend == "triton" and device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            return "skipped", "CPU tensors: set TRITON_INTERPRET=1 to interpret"
    if backend == "cuda" and device.type != "cuda":
        return "skipped", "needs CUDA tensors"
    if backend == "cuda" and ss._mamba_ssm_scan() is None:
        return "unavailable", "mamba-ssm does not import"
    try:
        ss.resolve_backend(backend, device)
    except Exception as err:  # an unusable backend is a row
        return "unavailable", one_line(err)
    return None


def agreement_rows(shape, dtype_name, device):
    """Each backend of ``SCAN_BACKENDS`` against the oracle, at one shape and dtype.

    Arguments
    ---------
    shape : tuple
        ``(name, b, d, n, L, oracle)``, as in ``SCAN_SHAPES``.
    dtype_name : str
        A key of ``DTYPES``: the activations' dtype.
    device : torch.device
        Where it runs.

    Returns
    -------
    list of dict
        One row per backend: ``status`` (``ok``, ``skipped``, ``unavailable``, ``oracle``,
        ``error``), and when ok ``y_rel``, ``max_rel``, ``worst``, ``max_abs``, ``tensors``
        (abs and rel of each) and ``ok`` (within ``TOLERANCES``).
    """
    name, b, d, n, L, oracle = shape
    tol_y, tol_g = TOLERANCES[dtype_name]
    base = dict(shape=name, dims=f"{b}x{d}x{n}x{L}", dtype=dtype_name)
    base.update(oracle=oracle, tol=f"{tol_y:g} / {tol_g:g}")
    rows = [dict(base, backend=backend) for backend in SCAN_BACKENDS]
    try:
        inputs = scan_inputs(b, d, n, L, DTYPES[dtype_name], device)
        g = torch.Generator().manual_seed(1)
        cotangent = torch.randn(b, d, L, generator=g).to(device)
        wide = torch.float64 if oracle == "ref" else torch.float32
        want = scan_outputs(oracle, inputs, cotangent.to(wide), wide)
    except Exception as err:  # no oracle: every row says why
        free_memory(device)
        why = f"oracle {oracle}: {one_line(err)}"
        return [dict(row, status="error", reason=why) for row in rows]
    for row in rows:
        backend = row["backend"]
        reason = unusable(backend, device)
        if backend == oracle:
            reason = ("oracle", "the oracle of this shape")
        if reason is not None:
            row.update(status=reason[0], reason=reason[1])
            continue
        t0 = time.perf_counter()
        try:
            errors = compare(scan_outputs(backend, inputs, cotangent), want)
        except Exception as err:  # a failing backend is a row
            row.update(status="error", reason=one_line(err))
            free_memory(device)
            continue
        worst = max(errors, key=lambda k: errors[k]["rel"])
        grads_rel = max(e["rel"] for k, e in errors.items() if k != "y")
        row.update(status="ok", tensors=errors, y_rel=errors["y"]["rel"])
        row.update(max_rel=errors[worst]["rel"], worst=worst)
        row["max_abs"] = max(e["abs"] for e in errors.values())
        row["ok"] = errors["y"]["rel"] <= tol_y and grads_rel <= tol_g
        row["wall_s"] = time.perf_counter() - t0
    return rows


def agreement(run, share):
    """Section 1 of ``gpu_check.py``: appends the rows of every shape and dtype.

    Arguments
    ---------
    run : gpu_check.Run
        Its plan's ``scan_shapes``, device, budget and report (``report["agreement"]``).
    share : float
        The section ends at this share of the budget: no shape starts that is predicted
        (linearly in L from the last one) to end later; its rows say ``skipped``.
    """
    rows, last = run.report["agreement"], None  # last: (wall of one dtype, L)
    for shape in run.plan["scan_shapes"]:
        for dtype_name in DTYPES:
            guess = predict(*last, shape[4], 1) if last else 0.0
            if not run.budget.allows(guess, share):
                rows.append(dict(shape=shape[0], dtype=dtype_name))
                rows[-1].update(status="skipped", reason="time budget")
                continue
            t0 = time.perf_counter()
            rows += agreement_rows(shape, dtype_name, run.device)
            free_memory(run.device, collect=False)
            last = (time.perf_counter() - t0, shape[4])
