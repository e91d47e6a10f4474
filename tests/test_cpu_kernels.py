"""The fused C++ CPU kernels: the scan and the causal conv against their oracles, threads,
streaming from an initial state, and the fallback when the kernels cannot be built."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from speechbrain_crossmamba.nnet.causal_conv import causal_conv1d
from speechbrain_crossmamba.nnet.selective_scan import selective_scan
from test_selective_scan import _assert_matches_ref, _inputs, _rel, _run


@pytest.mark.parametrize(
    "b, d, n, L, groups",
    [
        (1, 16, 16, 1, None),  # L = 1, the templated n = 16 path
        (2, 12, 7, 97, None),  # n not a template size: the generic path
        (3, 8, 5, 33, 4),  # groups, generic n
        (1, 64, 16, 600, 2),  # b = 1: rows split over the threads, groups share dB/dC partials
        (4, 6, 32, 40, 3),
        (1, 8, 64, 1100, None),  # L·n above the keep-all limit: block states recomputed
    ],
)
def test_cpu_scan_matches_ref_at_several_shapes(b, d, n, L, groups):
    _assert_matches_ref(_inputs(b, d, n, L, groups=groups), backend="cpu")


def test_cpu_scan_without_options_matches_ref():
    inputs = _inputs(2, 8, 16, 50, D=False, z=False, bias=False)
    _assert_matches_ref(inputs, softplus=False, backend="cpu")


@pytest.mark.parametrize("b", [1, 5])
def test_thread_counts_agree(b):
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(_run("cpu", _inputs(b, 32, 16, 300, groups=2), softplus=True))
    finally:
        torch.set_num_threads(before)
    (y1, l1, g1), (y2, l2, g2) = results
    assert _rel(y1, y2) < 1e-6 and _rel(l1, l2) < 1e-6
    for name in g1:
        assert _rel(g1[name], g2[name]) < 1e-5, name


def _chunked(inputs, cuts, backend):
    """The scan in consecutive chunks, each from the last state of the one before."""
    outs, state = [], None
    for t0, t1 in zip(cuts[:-1], cuts[1:]):
        part = {k: inputs[k][..., t0:t1] for k in ("u", "delta", "B", "C", "z")}
        y, state = selective_scan(
            **part, A=inputs["A"], D=inputs["D"], delta_bias=inputs["delta_bias"],
            delta_softplus=True, return_last_state=True, initial_state=state, backend=backend,
        )  # fmt: skip
        outs.append(y)
    return torch.cat(outs, -1), state


def test_chunks_from_initial_state_equal_one_pass_with_gradients():
    inputs = _inputs(2, 8, 16, 120)
    cuts = [0, 1, 40, 41, 97, 120]
    y_one, last_one, g_one = _run("ref", inputs, softplus=True)
    y, last = _chunked(inputs, cuts, "cpu")
    assert _rel(y, y_one) < 1e-5 and _rel(last, last_one) < 1e-5
    gen = torch.Generator().manual_seed(1)  # the same loss weights as _run
    loss = (y * torch.randn(y.shape, generator=gen)).sum()
    loss = loss + (last * torch.randn(last.shape, generator=gen)).sum()
    leaves = [k for k in g_one]
    grads = torch.autograd.grad(loss, [inputs[k] for k in leaves])
    for name, grad in zip(leaves, grads):  # gradients flow back through every initial state
        assert _rel(grad, g_one[name]) < 1e-4, name


def _ref_from(h0, u, delta, A, B, C, D, z, delta_bias):
    """A float64 loop from the state h0 (B, C ungrouped), differentiable in every input."""
    dt = F.softplus(delta.double() + delta_bias.double()[:, None])
    h, ys = h0.double(), []
    for t in range(u.shape[-1]):
        h = torch.exp(dt[..., t, None] * A.double()) * h
        h = h + (dt[..., t] * u[..., t].double())[..., None] * B[:, None, :, t].double()
        ys.append((h * C[:, None, :, t].double()).sum(-1))
    y = torch.stack(ys, -1) + D.double()[:, None] * u.double()
    return y * F.silu(z.double())


def test_initial_state_gradient_matches_a_float64_loop():
    inputs = _inputs(2, 8, 4, 30)
    h0 = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(3)).requires_grad_()
    leaves = [h0, inputs["u"], inputs["delta"], inputs["A"], inputs["B"]]
    results = []
    for y in (selective_scan(**inputs, delta_softplus=True, initial_state=h0, backend="cpu"),
              _ref_from(h0, **inputs)):  # fmt: skip
        results.append((y, torch.autograd.grad((y * y).sum(), leaves)))
    (y, grads), (y_ref, grads_ref) = results
    assert _rel(y, y_ref) < 1e-5
    for name, a, r in zip(["h0", "u", "delta", "A", "B"], grads, grads_ref):
        assert _rel(a, r) < 1e-4, name


def test_bf16_inputs_give_bf16_output_with_fp32_accumulation():
    inp = {k: v.detach() if v is not None else None for k, v in _inputs(2, 16, 16, 500).items()}
    bf = {k: v.bfloat16() if v is not None else None for k, v in inp.items()}
    y = selective_scan(**bf, delta_softplus=True, backend="cpu")
    ref = selective_scan(**{k: v.float() if v is not None else None for k, v in bf.items()},
                         delta_softplus=True, backend="ref")  # fmt: skip
    assert y.dtype == torch.bfloat16
    assert _rel(y.float(), ref) < 1e-2  # the bf16 rounding of the output only


def test_cpu_backend_on_other_devices_is_a_clear_error():
    with pytest.raises(RuntimeError, match="needs CPU tensors"):
        from speechbrain_crossmamba.nnet.selective_scan import resolve_backend

        resolve_backend("cpu", torch.device("meta"))


# --- the causal conv --------------------------------------------------------------------


def _conv_ref(x, w, bias, history, silu):
    full = torch.cat([history if history is not None else x.new_zeros(*x.shape[:2], w.shape[1] - 1), x], -1)
    y = F.conv1d(full.double(), w.double()[:, None], None if bias is None else bias.double(),
                 groups=x.shape[1])  # fmt: skip
    return F.silu(y) if silu else y


@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("k, L, bias, history", [(4, 50, True, False), (3, 1, False, True),
                                                 (4, 7, True, True), (2, 300, False, False)])
def test_cpu_conv_matches_conv1d_with_gradients(k, L, bias, history, silu):
    g = torch.Generator().manual_seed(0)
    b, d = 3, 10
    leaves = dict(
        x=torch.randn(b, d, L, generator=g), w=torch.randn(d, k, generator=g),
        bias=torch.randn(d, generator=g) if bias else None,
        history=torch.randn(b, d, k - 1, generator=g) if history else None,
    )  # fmt: skip
    leaves = {n: t.requires_grad_() for n, t in leaves.items() if t is not None}
    act = "silu" if silu else None
    y = causal_conv1d(leaves["x"], leaves["w"], leaves.get("bias"), act, leaves.get("history"), "cpu")
    ref = _conv_ref(leaves["x"], leaves["w"], leaves.get("bias"), leaves.get("history"), silu)
    assert _rel(y, ref) < 1e-5
    weight = torch.randn(y.shape, generator=g)
    grads = torch.autograd.grad((y * weight).sum(), list(leaves.values()))
    grads_ref = torch.autograd.grad((ref * weight.double()).sum(), list(leaves.values()))
    for name, a, r in zip(leaves, grads, grads_ref):
        assert _rel(a, r) < 1e-5, name


def test_conv_backends_agree_and_bad_shapes_are_clear():
    x, w, bias = torch.randn(2, 6, 40), torch.randn(6, 4), torch.randn(6)
    y_cpu = causal_conv1d(x, w, bias, "silu", backend="cpu")
    y_torch = causal_conv1d(x, w, bias, "silu", backend="torch")
    assert torch.allclose(y_cpu, y_torch, atol=1e-5)
    with pytest.raises(ValueError, match="history must be"):
        causal_conv1d(x, w, history=torch.zeros(2, 6, 2))
    with pytest.raises(ValueError, match="activation must be"):
        causal_conv1d(x, w, activation="relu")


def test_conv_cuda_backend_takes_widths_2_to_4_only(monkeypatch):
    """causal-conv1d's kernel takes k = 2-4: "auto" falls back for another width, an explicit
    "cuda" names it (the resolution only: a stand-in kernel and a CUDA device object, no GPU)."""
    from speechbrain_crossmamba.nnet import causal_conv

    monkeypatch.setattr(causal_conv, "_cuda_conv", lambda: object())
    resolve, cuda = causal_conv.resolve_conv_backend, torch.device("cuda")
    for k in (2, 3, 4):
        assert resolve("auto", cuda, width=k) == resolve("cuda", cuda, width=k) == "cuda"
    assert resolve("auto", cuda) == "cuda"  # width not given: not checked
    assert resolve("auto", cuda, history=True, width=4) == "torch"
    for k in (1, 5, 8):
        assert resolve("auto", cuda, width=k) == "torch"
        with pytest.raises(RuntimeError, match=f"kernel widths 2-4 .*got width {k};"):
            resolve("cuda", cuda, width=k)
    # causal_conv1d passes its kernel's width (on CPU tensors the width is named first)
    x = torch.randn(1, 3, 6)
    with pytest.raises(RuntimeError, match="got width 5"):
        causal_conv.causal_conv1d(x, torch.randn(3, 5), backend="cuda")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        causal_conv.causal_conv1d(x, torch.randn(3, 4), backend="cuda")


# --- the fallback -----------------------------------------------------------------------

FALLBACK = textwrap.dedent(
    """
    import warnings, torch
    from speechbrain_crossmamba.nnet.selective_scan import resolve_backend, selective_scan
    from speechbrain_crossmamba.nnet.causal_conv import resolve_conv_backend
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = resolve_backend("auto", torch.device("cpu"))
        second = resolve_conv_backend("auto", torch.device("cpu"))
        u, delta = torch.randn(1, 4, 9), torch.rand(1, 4, 9)
        y = selective_scan(u, delta, -torch.rand(4, 3), torch.randn(1, 3, 9), torch.randn(1, 3, 9))
        ref = selective_scan(u, delta, -torch.rand(4, 3), torch.randn(1, 3, 9), torch.randn(1, 3, 9),
                             backend="torch")
    msgs = [str(w.message) for w in caught if "CPU kernels could not be built" in str(w.message)]
    print(first, second, len(msgs), bool(torch.isfinite(y).all()))
    print(msgs[0])
    try:
        resolve_backend("cpu", torch.device("cpu"))
    except RuntimeError as err:
        print("explicit:", err)
    """
)


def test_failed_build_warns_once_and_falls_back_to_torch(tmp_path):
    """A real build with a compiler that does not exist, in a fresh extension cache."""
    env = dict(os.environ, CXX=str(tmp_path / "no-such-c++"), TORCH_EXTENSIONS_DIR=str(tmp_path))
    env.pop("SB_CROSSMAMBA_NO_CPU_KERNELS", None)
    proc = subprocess.run([sys.executable, "-c", FALLBACK], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "torch torch 1 True"  # both ops fall back; one warning in all
    assert "no-such-c++" in lines[1]  # the reason is named
    assert lines[2].startswith("explicit: selective-scan backend 'cpu' is unavailable")


def test_a_decaying_state_is_flushed_to_zero_not_left_subnormal():
    """A state that decays below FLT_MIN is flushed to 0 (the CPU's denormal path is tens of times
    slower per operation); the outputs still match the torch backend."""
    g = torch.Generator().manual_seed(0)
    b, d, n, L = 1, 8, 16, 62
    u = torch.zeros(b, d, L)
    u[..., 0] = 1.0  # one impulse, then the state only decays: exp(-1.5) per step
    delta = torch.ones(b, d, L)
    A = -1.5 * torch.ones(d, n)
    B, C = torch.randn(b, n, L, generator=g), torch.randn(b, n, L, generator=g)
    kwargs = dict(return_last_state=True)
    y_cpu, last_cpu = selective_scan(u, delta, A, B, C, backend="cpu", **kwargs)
    y_ref, last_ref = selective_scan(u.double(), delta.double(), A.double(), B.double(), C.double(),
                                     backend="torch", **kwargs)
    tiny = torch.finfo(torch.float32).tiny
    assert 0 < last_ref.abs().max() < tiny  # exp(-1.5 * 61) ~ 2e-40: subnormal in float32
    assert torch.count_nonzero(last_cpu) == 0  # flushed, not subnormal
    assert torch.allclose(y_cpu.double(), y_ref, atol=1e-6, rtol=1e-4)


def test_the_environment_variable_turns_the_cpu_kernels_off():
    """``SB_CROSSMAMBA_NO_CPU_KERNELS=1`` (README): no build, both ops on ``torch``, a named reason."""
    code = (
        "import torch\n"
        "from speechbrain_crossmamba.nnet._cpu_kernels import cpu_kernels, cpu_kernels_error\n"
        "from speechbrain_crossmamba.nnet.causal_conv import resolve_conv_backend\n"
        "from speechbrain_crossmamba.nnet.selective_scan import resolve_backend\n"
        "cpu = torch.device('cpu')\n"
        "print(cpu_kernels() is None, resolve_backend('auto', cpu), resolve_conv_backend('auto', cpu))\n"
        "print(cpu_kernels_error())\n"
    )
    for value, expected in (("1", "True torch torch"), ("", "False cpu cpu")):
        env = dict(os.environ, SB_CROSSMAMBA_NO_CPU_KERNELS=value)
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        lines = run.stdout.splitlines()
        assert lines[0] == expected
        if value:
            assert lines[1] == "RuntimeError: disabled by SB_CROSSMAMBA_NO_CPU_KERNELS=1"
