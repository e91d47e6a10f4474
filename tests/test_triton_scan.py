"""The "triton" scan, run by Triton's interpreter on CPU, against the float64 "ref" loop.

The repository's ``conftest.py`` sets ``TRITON_INTERPRET=1`` before triton is imported: the same kernels that Triton compiles for a GPU run here
on CPU tensors, forward and backward, so the GPU path is tested on every machine and in CI.
Shapes stay tiny: the interpreter runs each kernel program in numpy.
"""

import os
import subprocess
import sys

import pytest
import torch
from test_selective_scan import _inputs, _rel, _run

from speechbrain_crossmamba.nnet import selective_scan as scan_module
from speechbrain_crossmamba.nnet.selective_scan import (
    resolve_backend,
    selective_scan,
)

pytest.importorskip(
    "triton",
    reason="triton is not installed (it comes with torch's CUDA wheels)",
)


def _assert_triton_matches_ref(inputs, softplus=True):
    y, last, grads = _run("triton", inputs, softplus)
    y_ref, last_ref, grads_ref = _run("ref", inputs, softplus)
    assert y.dtype == torch.float32 and last.dtype == torch.float32
    assert _rel(y, y_ref) < 1e-5
    assert _rel(last, last_ref) < 1e-5
    assert set(grads) == set(grads_ref)
    for name, grad in grads.items():
        assert _rel(grad, grads_ref[name]) < 1e-5, name


@pytest.mark.parametrize(
    "b, d, n, L, groups",
    [
        (2, 4, 3, 37, None),  # odd L, n != 16, one time block
        (1, 4, 2, 1, None),  # a single step
        (2, 8, 5, 150, 2),  # three time blocks, two groups of B and C
    ],
)
def test_triton_matches_ref_forward_and_every_gradient(b, d, n, L, groups):
    _assert_triton_matches_ref(_inputs(b, d, n, L, groups=groups))


def test_triton_matches_ref_without_D_z_bias_or_softplus():
    _assert_triton_matches_ref(
        _inputs(2, 4, 3, 70, D=False, z=False, bias=False), softplus=False
    )


def _chunked(backend, inputs, cuts):
    """The scan in pieces, each from the last state of the one before."""
    ys, state = [], None
    for t0, t1 in zip(cuts[:-1], cuts[1:]):
        piece = {
            k: v[..., t0:t1] if k in ("u", "delta", "B", "C", "z") else v
            for k, v in inputs.items()
        }
        y, state = selective_scan(
            **piece,
            delta_softplus=True,
            return_last_state=True,
            initial_state=state,
            backend=backend,
        )
        ys.append(y)
    return torch.cat(ys, -1), state


def test_chunks_fed_with_initial_state_equal_one_pass_with_gradients():
    inputs = _inputs(2, 4, 3, 90)
    g = torch.Generator().manual_seed(3)
    leaves = [v for v in inputs.values() if v is not None]
    results = {}
    for name, backend, cuts in (
        ("one pass", "triton", [0, 90]),
        ("triton chunks", "triton", [0, 33, 34, 90]),
        ("ref chunks", "ref", [0, 33, 34, 90]),
    ):
        y, last = _chunked(backend, inputs, cuts)
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
        v = torch.randn(last.shape, generator=g.manual_seed(2))
        grads = torch.autograd.grad((y * w).sum() + (last * v).sum(), leaves)
        results[name] = (y, last, grads)
    y, last, grads = results["triton chunks"]
    for other in ("one pass", "ref chunks"):
        y_o, last_o, grads_o = results[other]
        assert _rel(y, y_o) < 1e-5 and _rel(last, last_o) < 1e-5
        for grad, grad_o in zip(grads, grads_o):
            assert _rel(grad, grad_o) < 1e-5


def test_initial_state_gradient_matches_ref():
    inputs = _inputs(1, 4, 3, 20)
    h0 = torch.randn(1, 4, 3, requires_grad=True)
    grads = {}
    for backend in ("triton", "ref"):
        y, last = selective_scan(
            **inputs,
            delta_softplus=True,
            return_last_state=True,
            initial_state=h0,
            backend=backend,
        )
        (grads[backend],) = torch.autograd.grad(y.sum() + 2 * last.sum(), [h0])
    assert grads["triton"].abs().max() > 0
    assert _rel(grads["triton"], grads["ref"]) < 1e-5


def test_bf16_inputs_keep_an_fp32_state():
    inputs = _inputs(2, 4, 3, 40)
    half = {
        k: (
            v.detach().bfloat16().requires_grad_()
            if k in ("u", "delta", "B", "C", "z")
            else v
        )
        for k, v in inputs.items()
    }
    y, last, grads = _run("triton", half, softplus=True)
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert (
        grads["u"].dtype == torch.bfloat16 and grads["A"].dtype == torch.float32
    )
    full = {
        k: (v.detach().float().requires_grad_() if v is not None else None)
        for k, v in half.items()
    }
    y_ref, last_ref, grads_ref = _run("ref", full, softplus=True)
    assert _rel(y.float(), y_ref) < 1e-2  # the bf16 rounding of the output only
    assert _rel(last, last_ref) < 1e-5  # the state is fp32 throughout
    assert (
        _rel(grads["A"], grads_ref["A"]) < 1e-2
    )  # dout arrives rounded to bf16


def test_triton_on_cpu_without_the_interpreter_is_a_one_line_error():
    code = (
        "import torch; from speechbrain_crossmamba.nnet.selective_scan import selective_scan as s\n"
        "x = torch.randn(1, 2, 3)\n"
        "s(x, x, -torch.ones(2, 1), torch.ones(1, 1, 3), torch.ones(1, 1, 3), backend='triton')"
    )
    for env, message in (
        ("0", "needs CUDA tensors"),
        ("", "needs CUDA tensors"),
    ):
        run = subprocess.run(
            [sys.executable, "-c", code],
            env=dict(os.environ, TRITON_INTERPRET=env),
            capture_output=True,
            text=True,
        )
        assert run.returncode == 1
        assert (
            f"RuntimeError: selective-scan backend 'triton' {message}"
            in run.stderr
        )


@pytest.mark.parametrize(
    "dtype, last_state_grad, mamba_ssm, triton_ok, expected",
    [
        (torch.float32, False, True, True, "cuda"),
        (torch.bfloat16, False, True, True, "cuda"),
        (
            torch.float64,
            False,
            True,
            True,
            "triton",
        ),  # mamba-ssm rejects float64
        (torch.float32, True, True, True, "triton"),  # mamba-ssm drops dlast
        (torch.float32, False, False, True, "triton"),
        (torch.float32, False, False, False, "torch"),
    ],
)
def test_auto_on_cuda_picks_mamba_ssm_then_triton_then_torch(
    monkeypatch, dtype, last_state_grad, mamba_ssm, triton_ok, expected
):
    monkeypatch.setattr(
        scan_module, "_mamba_ssm_scan", lambda: print if mamba_ssm else None
    )
    monkeypatch.setattr(
        scan_module,
        "triton_error",
        lambda device: None if triton_ok else "no triton",
    )
    device = torch.device("cuda")
    assert resolve_backend("auto", device, dtype, last_state_grad) == expected


def test_explicit_cuda_backend_refuses_float64(monkeypatch):
    monkeypatch.setattr(scan_module, "_mamba_ssm_scan", lambda: print)
    with pytest.raises(
        RuntimeError, match="takes float32, float16 or bfloat16"
    ):
        resolve_backend("cuda", torch.device("cuda"), torch.float64)


def test_cuda_backend_returns_the_last_state_detached(monkeypatch):
    """mamba-ssm's backward ignores the last state's gradient: say so instead of dropping it."""
    inputs = _inputs(1, 4, 2, 6)

    def kernel(
        u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state
    ):
        return selective_scan(
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            softplus,
            return_last_state,
            backend="ref",
        )

    monkeypatch.setattr(scan_module, "_mamba_ssm_scan", lambda: kernel)
    monkeypatch.setattr(
        scan_module,
        "resolve_backend",
        lambda name, *_: "ref" if name == "ref" else "cuda",
    )
    y, last = selective_scan(**inputs, return_last_state=True)
    assert y.requires_grad and not last.requires_grad


def test_3d_B_with_grouped_C_is_a_one_line_error():
    inputs = _inputs(2, 8, 4, 10)
    inputs["C"] = torch.randn(2, 2, 4, 10)
    with pytest.raises(ValueError, match="same number of groups, got 1 and 2"):
        selective_scan(**inputs)


def test_cuda_backend_passes_delta_and_z_in_the_dtype_of_u(monkeypatch):
    """mamba-ssm's kernel requires u, delta and z in one dtype (fp32 A, D and bias)."""
    seen = {}

    def kernel(
        u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state
    ):
        seen.update(
            u=u.dtype, delta=delta.dtype, z=z.dtype, B=B.dtype, A=A.dtype
        )
        return u

    monkeypatch.setattr(scan_module, "_mamba_ssm_scan", lambda: kernel)
    monkeypatch.setattr(scan_module, "resolve_backend", lambda *_: "cuda")
    inputs = {
        k: v.detach() if v is not None else v
        for k, v in _inputs(1, 4, 2, 6).items()
    }
    selective_scan(**dict(inputs, u=inputs["u"].bfloat16()))
    bf16 = torch.bfloat16
    assert seen == dict(u=bf16, delta=bf16, z=bf16, B=bf16, A=torch.float32)


COMPILE = """
import inspect, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from speechbrain_crossmamba.nnet._triton_kernels import kernels

arch, dtype, flag = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
for kernel in kernels():
    names = list(inspect.signature(kernel.fn).parameters)
    consts = {k: flag for k in names if k.startswith("HAS_") or k == "SOFTPLUS"}
    consts.update(BLOCK_D=4, BLOCK_N=16, BLOCK_T=64)
    low = ("u_ptr", "dl_ptr", "B_ptr", "C_ptr", "z_ptr", "out_ptr", "dout_ptr")
    signature = {
        k: "constexpr" if k in consts else
        (f"*{dtype}" if k in low else "*fp32") if k.endswith("_ptr") else "i32"
        for k in names
    }
    compiled = triton.compile(
        ASTSource(fn=kernel, signature=signature, constexprs=consts),
        target=GPUTarget("cuda", arch, 32),
    )
    assert len(compiled.asm["cubin"]) > 0
    print(kernel.fn.__name__, "compiled for sm_%d" % arch)
"""


@pytest.mark.parametrize(
    "arch, dtype, options", [(90, "fp32", "1"), (80, "bf16", "0")]
)
def test_kernels_compile_to_gpu_code_without_a_gpu(arch, dtype, options):
    """Triton's compiler, not its interpreter: catches what only the GPU build rejects.

    Compiled ahead of time for an H100 (sm_90) with every option on, and for an A100 (sm_80)
    with bf16 inputs and every option off; no GPU or driver is needed to get a cubin.
    """
    run = subprocess.run(
        [sys.executable, "-c", COMPILE, str(arch), dtype, options],
        env=dict(os.environ, TRITON_INTERPRET="0"),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[:2] == [
        f"_fwd_kernel compiled for sm_{arch}",
        f"_bwd_kernel compiled for sm_{arch}",
    ]
