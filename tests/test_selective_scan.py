"""The "torch" and "cpu" scans against the float64 "ref" loop, backend selection, numerical safety."""

import pytest
import torch

from speechbrain_crossmamba.nnet import _scan_torch
from speechbrain_crossmamba.nnet.selective_scan import (
    ENV_VAR,
    hidden_attention,
    resolve_backend,
    selective_scan,
    set_default_backend,
)


def _inputs(b, d, n, L, groups=None, D=True, z=True, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    bc = (b, n, L) if groups is None else (b, groups, n, L)
    t = dict(
        u=torch.randn(b, d, L, generator=g),
        delta=0.5 * torch.randn(b, d, L, generator=g),
        A=-3 * torch.rand(d, n, generator=g) - 0.05,
        B=torch.randn(*bc, generator=g),
        C=torch.randn(*bc, generator=g),
        D=torch.randn(d, generator=g) if D else None,
        z=torch.randn(b, d, L, generator=g) if z else None,
        delta_bias=torch.randn(d, generator=g) if bias else None,
    )
    return {k: (v.requires_grad_() if v is not None else None) for k, v in t.items()}


def _run(backend, inputs, softplus):
    if not softplus:  # a raw Δ (+ bias) must then be positive
        inputs = dict(inputs, delta=inputs["delta"].abs())
        if inputs["delta_bias"] is not None:
            inputs["delta_bias"] = inputs["delta_bias"].abs()
    y, last = selective_scan(
        **inputs, delta_softplus=softplus, return_last_state=True, backend=backend
    )
    g = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=g)).sum()
    loss = loss + (last * torch.randn(last.shape, generator=g)).sum()
    leaves = {k: v for k, v in inputs.items() if v is not None and v.requires_grad}
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return y, last, dict(zip(leaves, grads))


def _rel(a, b):
    scale = b.double().abs().max().clamp(min=1e-12)
    return ((a.double() - b.double()).abs().max() / scale).item()


BACKENDS = ["torch", "cpu"]


def _assert_matches_ref(inputs, softplus=True, backend="torch"):
    y, last, grads = _run(backend, inputs, softplus)
    y_ref, last_ref, grads_ref = _run("ref", inputs, softplus)
    assert y.dtype == y_ref.dtype == torch.float32
    assert _rel(y, y_ref) < 1e-4
    assert _rel(last, last_ref) < 1e-4
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
        assert _rel(grad, grads_ref[name]) < 1e-3, name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L", [1, 7, 250, 1000, 1100])
@pytest.mark.parametrize("groups", [None, 2])
def test_backend_matches_ref_over_lengths(L, groups, backend):
    _assert_matches_ref(_inputs(2, 8, 4, L, groups=groups), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "D, z, bias, softplus",
    [(False, False, False, False), (True, False, False, True), (False, True, True, False)],
)
def test_backend_matches_ref_with_and_without_options(D, z, bias, softplus, backend):
    inputs = _inputs(2, 8, 4, 300, D=D, z=z, bias=bias)
    _assert_matches_ref(inputs, softplus=softplus, backend=backend)


@pytest.mark.parametrize(
    "b, d, n, L",
    [
        (2, 256, 8, 300),  # >= 4096 elements per step: plain loop, 32-step blocks, partial block
        (1, 64, 16, 2500),  # two-level inner scan, several blocks, padded last block
    ],
)
def test_torch_matches_ref_across_block_boundaries(b, d, n, L):
    T, _ = _scan_torch._plan(L, b * d * n)
    assert T < L and L % T != 0  # really crosses block boundaries, and ends mid-block
    _assert_matches_ref(_inputs(b, d, n, L))


def test_grouped_equals_explicitly_repeated_groups():
    inp = _inputs(1, 8, 4, 50, groups=2, D=False, z=False, bias=False)
    y = selective_scan(**inp)
    # channels 0-3 read group 0 only: a scan with group 0 as ungrouped B/C gives the same
    half = {k: inp[k] for k in ("u", "delta")}
    half = {k: v[:, :4] for k, v in half.items()}
    y0 = selective_scan(**half, A=inp["A"][:4], B=inp["B"][:, 0], C=inp["C"][:, 0])
    torch.testing.assert_close(y[:, :4], y0)


def test_hidden_attention_reproduces_the_scan():
    inp = _inputs(2, 6, 3, 12, z=False)
    y = selective_scan(**inp, delta_softplus=True, backend="ref")
    alpha = hidden_attention(inp["delta"], inp["A"], inp["B"], inp["C"], inp["delta_bias"], True)
    assert alpha.shape == (2, 6, 12, 12)
    assert (alpha.triu(1) == 0).all()  # causal
    y_attn = torch.einsum("bdts,bds->bdt", alpha, inp["u"].double())
    y_attn = y_attn + inp["D"].double()[:, None] * inp["u"].double()
    torch.testing.assert_close(y_attn.float(), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_memory_is_linear_in_state_free_size(backend):
    """Saved activations are O(b·d·L), far below the O(b·d·n·L) of storing every state."""
    b, d, n, L = 1, 64, 64, 4096
    inp = _inputs(b, d, n, L)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selective_scan(**inp, delta_softplus=True, backend=backend)
    all_states = b * d * n * L * 4
    assert sum(saved) < all_states / 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_sequence_large_delta_is_finite(backend):
    b, d, n, L = 1, 4, 4, 65536
    inp = _inputs(b, d, n, L, bias=False)
    inp["delta"] = (60 + 10 * torch.rand(b, d, L)).requires_grad_()
    y, last, grads = _run(backend, inp, softplus=True)
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_autocast_keeps_fp32_state_and_finite_output(backend):
    inp = _inputs(2, 16, 4, 2000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u = inp["u"].bfloat16()
        y, last = selective_scan(
            **dict(inp, u=u), delta_softplus=True, return_last_state=True, backend=backend
        )
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert torch.isfinite(y).all()
    ref = selective_scan(**dict(inp, u=u.float()), delta_softplus=True, backend="ref")
    assert _rel(y.float(), ref) < 2e-2  # only the bf16 rounding of u and y


def test_auto_resolves_to_the_cpu_kernel_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"


def test_cuda_backend_on_cpu_tensors_is_a_clear_error():
    inp = _inputs(1, 4, 2, 5)
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        selective_scan(**inp, backend="cuda")


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        selective_scan(**_inputs(1, 4, 2, 5), backend="bogus")


def test_environment_variable_and_module_option_force_a_backend(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "ref")
    assert resolve_backend("auto", torch.device("cpu")) == "ref"
    set_default_backend("torch")
    try:
        assert resolve_backend("auto", torch.device("cpu")) == "torch"
    finally:
        set_default_backend(None)
    monkeypatch.setenv(ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        resolve_backend("auto", torch.device("cpu"))


def test_forced_ref_backend_is_used(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "ref")
    calls = []
    monkeypatch.setattr(
        _scan_torch.SelectiveScanTorch, "apply", lambda *a: calls.append(a)
    )
    selective_scan(**_inputs(1, 4, 2, 5))
    assert calls == []


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(A=torch.randn(5, 4)), "A must be"),
        (dict(B=torch.randn(2, 3, 50)), "B must be"),
        (dict(z=torch.randn(2, 8, 49)), "z must be"),
        (dict(D=torch.randn(7)), "D must be"),
        (dict(B=torch.randn(2, 3, 4, 50), C=torch.randn(2, 3, 4, 50)), "do not divide"),
    ],
)
def test_bad_shapes_raise_one_line_errors(override, message):
    inp = dict(_inputs(2, 8, 4, 50), **override)
    with pytest.raises(ValueError, match=message):
        selective_scan(**inp)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L", [1, 40])
def test_inputs_are_not_modified(L, backend):
    """Time-major views can alias the caller's tensors (b=1, channel-last memory, L=1)."""
    inp = _inputs(1, 8, 4, L)
    inp["delta"] = torch.randn(1, L, 8).transpose(1, 2).requires_grad_()
    before = {k: v.detach().clone() for k, v in inp.items() if v is not None}
    _run(backend, inp, softplus=True)
    for k, v in before.items():
        assert torch.equal(inp[k].detach(), v), k


def test_empty_sequence_is_a_clear_error():
    with pytest.raises(ValueError, match="empty sequence"):
        selective_scan(**_inputs(1, 4, 2, 0))


def test_batch_slices_match_one_piece(monkeypatch):
    """Wide, short scans run in batch slices; outputs, last states and gradients are unchanged."""
    results = []
    apply = _scan_torch.SelectiveScanTorch.apply
    for budget in (2**30, 4 * 8 * 5):  # one piece; slices of 1 row (b=5, d=8, n=4, L=5)
        monkeypatch.setattr(_scan_torch, "_SLICE_ELEMENTS", budget)
        inp = _inputs(5, 8, 4, 5, groups=1)
        calls = []
        monkeypatch.setattr(
            _scan_torch.SelectiveScanTorch, "apply", lambda *a, c=calls: c.append(1) or apply(*a)
        )
        y, last = selective_scan(
            **inp, delta_softplus=True, return_last_state=True, backend="torch"
        )
        (y.sum() + last.sum()).backward()
        results.append((len(calls), y, last, [inp[k].grad for k in ("u", "delta", "A", "B", "C")]))
    (n1, y1, l1, g1), (n2, y2, l2, g2) = results
    assert (n1, n2) == (1, 5)
    assert torch.allclose(y1, y2, atol=1e-6) and torch.allclose(l1, l2, atol=1e-6)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5)
