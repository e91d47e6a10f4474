"""Conformance with mamba-ssm and causal-conv1d: our selective-scan backends, our causal conv,
the ``"cuda"`` call paths and ``MambaMixer``'s weights, against their pure-PyTorch references
(``selective_scan_ref``, ``causal_conv1d_ref`` and ``Mamba`` with ``use_fast_path=False``).

Nothing is installed or built at run time. The references are loaded from the packages'
Python sources: the folder ``$SB_CROSSMAMBA_MAMBA_SOURCES``, else ``.cache/mamba-sources``
(both filled by ``tools/fetch_mamba_sources.sh [DIR]``), else installs (for instance
``MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE pip install mamba-ssm
causal-conv1d einops --no-build-isolation``); without them the module is skipped. The
packages' ``__init__`` files are not run (they import every model, triton kernels and
huggingface_hub); their compiled extensions and the modules that wrap them are stand-ins in
``sys.modules`` while the references load, and ``sys.modules`` is restored afterwards, so the
rest of the suite never sees the stand-ins.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from speechbrain_crossmamba.nnet import (
    causal_conv,
    selective_scan as scan_module,
)
from speechbrain_crossmamba.nnet._cpu_kernels import cpu_kernels
from speechbrain_crossmamba.nnet.mamba_mixer import MambaMixer

ENV_VAR = "SB_CROSSMAMBA_MAMBA_SOURCES"
REPO = Path(__file__).resolve().parents[1]
# top-level modules set aside while the references load, and restored afterwards
ISOLATED = ("mamba_ssm", "causal_conv1d")
ISOLATED += ("selective_scan_cuda", "causal_conv1d_cuda")


def _find_sources():
    """{package: its folder} for mamba_ssm, causal_conv1d and einops (when not installed),
    and the names not found."""
    base = Path(os.environ.get(ENV_VAR) or REPO / ".cache" / "mamba-sources")
    roots, missing = {}, []
    for name in ("einops", "mamba_ssm", "causal_conv1d"):
        try:  # an install; find_spec runs no package code
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if name == "einops" and spec is not None:
            continue
        found = sorted(base.glob(f"{name}/__init__.py"))
        found += sorted(base.glob(f"*/{name}/__init__.py"))
        if found:
            roots[name] = found[-1].parent
        elif spec is not None and spec.submodule_search_locations:
            roots[name] = Path(next(iter(spec.submodule_search_locations)))
        else:
            missing.append(name)
    return roots, missing


def _isolated(module_name):
    return module_name.split(".")[0] in ISOLATED


def _unavailable(*args, **kwargs):
    raise RuntimeError("a compiled kernel, stubbed out by the conformance test")


def _stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _bare_package(name, folder):
    """The package ``name`` at ``folder``, without running its ``__init__``."""
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    return importlib.util.module_from_spec(spec)


def _stand_ins(roots):
    conv_cpp = "causal_conv1d.cpp_functions"
    conv_fns = ("fwd", "bwd", "update")
    norm = "mamba_ssm.ops.triton.layer_norm"
    return {
        "mamba_ssm": _bare_package("mamba_ssm", roots["mamba_ssm"]),
        "causal_conv1d": _bare_package("causal_conv1d", roots["causal_conv1d"]),
        # the compiled extensions
        "selective_scan_cuda": _stub("selective_scan_cuda"),
        "causal_conv1d_cuda": _stub("causal_conv1d_cuda"),
        # causal-conv1d's wrappers of its extension register torch.library ops
        # when imported: a second registration (by the real package, on a GPU
        # machine) would fail
        conv_cpp: _stub(
            conv_cpp,
            **{f"causal_conv1d_{f}_function": _unavailable for f in conv_fns},
        ),
        # triton kernels, imported at the top of selective_scan_interface
        # and (in a try) of mamba_simple
        norm: _stub(
            norm,
            _layer_norm_fwd=_unavailable,
            **dict.fromkeys(("RMSNorm", "layer_norm_fn", "rms_norm_fn")),
        ),
        # None: an ImportError, after which Mamba sets it to None
        "mamba_ssm.ops.triton.selective_state_update": None,
    }


def _load_references(roots):
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if _isolated(k)}
    path = list(sys.path)
    sys.modules.update(_stand_ins(roots))
    try:
        if "einops" in roots:
            # it stays loaded: it imports parts of itself lazily
            sys.path.insert(0, str(roots["einops"].parent))
            importlib.import_module("einops")
        scan = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        simple = importlib.import_module("mamba_ssm.modules.mamba_simple")
        conv = importlib.import_module("causal_conv1d.causal_conv1d_interface")
    finally:
        for k in [k for k in sys.modules if _isolated(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
        sys.path[:] = path
    return types.SimpleNamespace(
        selective_scan_ref=scan.selective_scan_ref,
        causal_conv1d_ref=conv.causal_conv1d_ref,
        mamba_simple=simple,
    )


_roots, _missing = _find_sources()
if _missing:
    pytest.skip(
        f"mamba-ssm/causal-conv1d/einops Python sources not found "
        f"({', '.join(_missing)}): run tools/fetch_mamba_sources.sh [DIR], and "
        f"set {ENV_VAR}=DIR for a DIR other than .cache/mamba-sources",
        allow_module_level=True,
    )
REF = _load_references(_roots)

F64, F32, BF16 = torch.float64, torch.float32, torch.bfloat16
OUR_BACKENDS = ["ref", "torch", "cpu"]
if "triton" in scan_module.BACKENDS:
    OUR_BACKENDS.append("triton")
# (the triton backend takes fp32, fp16 and bf16)
SCAN_RUNS = [
    (b, t)
    for b in OUR_BACKENDS
    for t in (F64, F32)
    if (b, t) != ("triton", F64)
]
# (groups of B and C: None is 3-D; softplus with D, z and delta_bias, or none)
SCAN_CASES = [(2, True), (None, True), (None, False), (1, False)]


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _need_cpu_kernels():
    if cpu_kernels() is None:
        pytest.skip("the CPU kernels do not build here")


def _scan_inputs(dtype, groups, full, b=2, d=4, n=3, L=9):
    """Leaves of a small scan; ``full``: D, z and delta_bias too (then softplus)."""
    g = torch.Generator().manual_seed(0)
    bc = (b, n, L) if groups is None else (b, groups, n, L)
    delta = torch.randn(b, d, L, generator=g)
    t = dict(
        u=torch.randn(b, d, L, generator=g),
        delta=delta if full else 0.05 + 0.25 * delta.abs(),
        A=-(0.5 + torch.rand(d, n, generator=g)),
        B=torch.randn(*bc, generator=g),
        C=torch.randn(*bc, generator=g),
    )
    if full:
        t["D"] = torch.randn(d, generator=g)
        t["z"] = torch.randn(b, d, L, generator=g)
        t["delta_bias"] = 0.5 * torch.randn(d, generator=g)
    return {k: v.to(dtype).requires_grad_() for k, v in t.items()}


def _scan_and_grads(fn, inputs, full, last_in_loss=True):
    """Output, last state, and the gradients of every input of a weighted sum."""
    out, last = fn(**inputs, delta_softplus=full, return_last_state=True)
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g).to(out.dtype)).sum()
    if last_in_loss:
        weight = torch.randn(last.shape, generator=g).to(last.dtype)
        loss = loss + (last * weight).sum()
    grads = torch.autograd.grad(loss, list(inputs.values()))
    return out, last, dict(zip(inputs, grads))


def _assert_close(ours, theirs, tol_out, tol_grad):
    (y, last, grads), (y_ref, last_ref, grads_ref) = ours, theirs
    assert y.shape == y_ref.shape and last.shape == last_ref.shape
    assert last.dtype == F32, last.dtype  # ours is fp32 whatever the inputs
    assert _rel(y, y_ref) < tol_out, _rel(y, y_ref)
    assert _rel(last, last_ref) < tol_out, _rel(last, last_ref)
    for name, grad in grads.items():
        assert grad.dtype == grads_ref[name].dtype, name
        assert _rel(grad, grads_ref[name]) < tol_grad, name


@pytest.mark.parametrize("groups, full", SCAN_CASES)
@pytest.mark.parametrize("backend, dtype", SCAN_RUNS, ids=str)
def test_scan_backends_match_selective_scan_ref(
    backend, dtype, groups, full, monkeypatch
):
    """Forward (D, z, delta_bias, softplus, grouped B/C), last state, gradients."""
    if backend == "cpu":
        _need_cpu_kernels()
    if backend == "triton":  # CPU tensors, in Triton's interpreter
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        try:
            scan_module.resolve_backend("triton", torch.device("cpu"))
        except RuntimeError as err:
            pytest.skip(str(err))
    inputs = _scan_inputs(dtype, groups, full)
    ours = _scan_and_grads(
        lambda **kw: scan_module.selective_scan(**kw, backend=backend),
        inputs,
        full,
    )
    # mamba-ssm takes A in fp32 (and computes in fp32)
    theirs = _scan_and_grads(
        lambda A, **kw: REF.selective_scan_ref(A=A.float(), **kw), inputs, full
    )
    assert ours[0].dtype == dtype
    _assert_close(ours, theirs, 1e-6, 5e-6)


def _checked_scan(seen):
    """mamba-ssm's reference behind the input checks of its kernel (csrc)."""

    def scan(u, delta, A, B, C, D, z, delta_bias, softplus, return_last):
        assert u.dtype in (F32, torch.float16, BF16), u.dtype
        assert A.dtype == F32, A.dtype
        for name, t in dict(delta=delta, B=B, C=C, z=z).items():
            assert t is None or t.dtype == u.dtype, (name, t.dtype, u.dtype)
            assert t is None or t.stride(-1) == 1 or t.shape[-1] == 1, name
        assert u.stride(-1) == 1, "u"
        for name, t in dict(D=D, delta_bias=delta_bias).items():
            assert t is None or t.dtype == F32, (name, t.dtype)
        seen.append(B.dim())
        args = (D, z, delta_bias, softplus, return_last)
        return REF.selective_scan_ref(u, delta, A, B, C, *args)

    return scan


def _checked_conv(x, weight, bias=None, activation=None):
    """causal-conv1d's reference behind the input checks of its kernel (csrc)."""
    kernel_dtypes = (F32, torch.float16, BF16)
    assert x.dtype in kernel_dtypes and weight.dtype in kernel_dtypes
    assert 2 <= weight.shape[1] <= 4, weight.shape
    assert x.stride(2) == 1 or x.stride(1) == 1
    assert bias is None or (bias.dtype == weight.dtype and bias.stride(-1) == 1)
    return REF.causal_conv1d_ref(x, weight, bias, activation=activation)


def _through_cuda_paths(monkeypatch, seen):
    """Our "cuda" backends run on CPU tensors, the checked references as kernels."""
    monkeypatch.setattr(scan_module, "resolve_backend", lambda *a, **k: "cuda")
    monkeypatch.setattr(
        scan_module, "_mamba_ssm_scan", lambda: _checked_scan(seen)
    )
    cuda = lambda *a, **k: "cuda"  # noqa: E731
    monkeypatch.setattr(causal_conv, "resolve_conv_backend", cuda)
    monkeypatch.setattr(causal_conv, "_cuda_conv", lambda: _checked_conv)


@pytest.mark.parametrize("groups, full", SCAN_CASES[:3])
@pytest.mark.parametrize("dtype", [F32, BF16], ids=str)
def test_cuda_call_path_matches_our_ref(dtype, groups, full, monkeypatch):
    """``backend="cuda"``, mamba-ssm's reference standing in for its kernel: the
    arguments pass the kernel's checks; out, last state and gradients match."""
    seen = []
    _through_cuda_paths(monkeypatch, seen)
    inputs = _scan_inputs(dtype, groups, full)
    # u and z as strided views: the call path makes them contiguous
    with torch.no_grad():
        for name in ("u", "z") if full else ("u",):
            t = inputs[name].transpose(1, 2).contiguous().transpose(1, 2)
            inputs[name] = t.requires_grad_()
    assert inputs["u"].stride(-1) != 1

    def run(backend):  # mamba-ssm's backward ignores the last state's gradient
        return _scan_and_grads(
            lambda **kw: scan_module.selective_scan(**kw, backend=backend),
            inputs,
            full,
            last_in_loss=False,
        )

    ours, oracle = run("cuda"), run("ref")
    assert seen and ours[0].dtype == dtype and not ours[1].requires_grad
    tol = 1e-6 if dtype == F32 else 2e-2
    _assert_close(ours, oracle, tol, 5 * tol)


CONV_RUNS = [
    (backend, *case)
    for backend in ("torch", "cpu", "cuda")
    for case in ((True, True, False), (False, False, True), (True, True, True))
    if not (backend == "cuda" and case[2])  # (the kernel takes no history)
]


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("backend, bias, silu, history", CONV_RUNS)
def test_causal_conv_matches_causal_conv1d_ref(
    backend, width, bias, silu, history, monkeypatch
):
    """``causal_conv1d`` against ``causal_conv1d_ref`` (``history`` is its
    ``initial_states``), forward and gradients; ``"cuda"``: the reference as kernel."""
    if backend == "cpu":
        _need_cpu_kernels()
    if backend == "cuda":
        _through_cuda_paths(monkeypatch, [])
    g = torch.Generator().manual_seed(width)
    b, d, L = 2, 5, 7
    t = dict(
        x=torch.randn(b, d, L, generator=g),
        weight=torch.randn(d, width, generator=g),
    )
    if bias:
        t["bias"] = torch.randn(d, generator=g)
    if history:
        t["history"] = torch.randn(b, d, width - 1, generator=g)
    t = {k: v.requires_grad_() for k, v in t.items()}
    kw = dict(bias=t.get("bias"), activation="silu" if silu else None)
    x, weight, hist = t["x"], t["weight"], t.get("history")
    y = causal_conv.causal_conv1d(
        x, weight, **kw, history=hist, backend=backend
    )
    ref = REF.causal_conv1d_ref(x, weight, **kw, initial_states=hist)
    assert _rel(y, ref) < 1e-6
    w = torch.randn(y.shape, generator=g)
    grads = torch.autograd.grad((y * w).sum(), list(t.values()))
    grads_ref = torch.autograd.grad((ref * w).sum(), list(t.values()))
    for name, a, r in zip(t, grads, grads_ref):
        assert _rel(a, r) < 1e-6, name


def _mamba(options):
    simple = REF.mamba_simple
    return simple.Mamba(12, d_state=4, use_fast_path=False, **options)


OPTIONS = [
    {},
    dict(d_conv=3, expand=1.5, dt_rank=3, dt_min=0.01, dt_max=0.2),
]
OPTIONS[1].update(bias=True, conv_bias=False, dt_init="constant", dt_scale=0.5)


@pytest.mark.parametrize("path", ["auto", "cuda"])
@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "options"])
def test_mamba_weights_round_trip_into_mamba_mixer(options, path, monkeypatch):
    """A mamba-ssm ``Mamba``'s state_dict loads strictly into ``MambaMixer`` with the
    same options and gives the same output; ours loads back strictly into ``Mamba``."""
    # Mamba's GPU path (use_fast_path=False), with the references as kernels
    simple = REF.mamba_simple
    monkeypatch.setattr(simple, "selective_scan_fn", REF.selective_scan_ref)
    monkeypatch.setattr(simple, "causal_conv1d_fn", REF.causal_conv1d_ref)
    seen = []
    if path == "cuda":
        _through_cuda_paths(monkeypatch, seen)
    torch.manual_seed(0)
    theirs = _mamba(options)
    ours = MambaMixer(
        12, d_state=4, scan_backend=path, conv_backend=path, **options
    )
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in theirs.state_dict().items()}
    if options.get("dt_init") == "constant":  # the same initialisation
        assert torch.equal(ours.dt_proj.weight, theirs.dt_proj.weight)
    with torch.no_grad():  # every parameter away from its initial value
        for p in theirs.parameters():
            p.add_(0.2 * torch.randn_like(p))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 10, 12)
    expected = theirs(x)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-4)
    assert bool(seen) == (path == "cuda")
    back = _mamba(options)
    back.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(back(x), expected, atol=0, rtol=0)
