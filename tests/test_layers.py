"""Mamba and CrossMamba layers: sizes, padding, streaming, bidirectionality, and hosts."""

import pytest
import torch
import torch.nn.functional as F
from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model, Encoder

from speechbrain_crossmamba.nnet._cpu_kernels import cpu_kernels
from speechbrain_crossmamba.nnet.causal_decoder import CausalCrossMambaLayer
from speechbrain_crossmamba.nnet.cross_mamba import (
    BiCrossMambaBlock,
    CrossMambaBlock,
    CrossMambaMixer,
    SBCrossMambaBlock,
    align_clue,
)
from speechbrain_crossmamba.nnet.mamba import (
    BiMambaBlock,
    MambaBlock,
    MambaMixer,
    SBMambaBlock,
)
from speechbrain_crossmamba.nnet.selective_scan import selective_scan

SMALL = dict(d_state=4)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_reference_module():
    assert _count(MambaMixer(256)) == 437_760
    assert _count(CrossMambaMixer(256)) == 568_832
    assert _count(BiCrossMambaBlock(256)) == 1_138_688


def test_mixer_initialisation():
    mixer = MambaMixer(64, d_state=16)
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    expected = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(128, 16)
    torch.testing.assert_close(mixer.A_log.data, expected)
    assert (mixer.D.data == 1).all()


@pytest.mark.parametrize("conv_backend", ["torch", "cpu"])
def test_mamba_ssm_options_bias_conv_bias_dt_init_dt_scale(conv_backend):
    """mamba-ssm's Mamba options; without a conv bias the conv paths (whole, streamed) agree."""
    if conv_backend == "cpu" and cpu_kernels() is None:
        pytest.skip("the CPU kernels do not build here")
    torch.manual_seed(0)
    opts = dict(bias=True, conv_bias=False, dt_init="constant", dt_scale=2.0)
    mixer = MambaMixer(32, d_state=4, dt_rank=4, conv_backend=conv_backend, **opts)
    assert mixer.conv1d.bias is None and mixer.in_proj.bias.shape == (128,)
    assert mixer.out_proj.bias.shape == (32,)
    assert (mixer.dt_proj.weight == 2.0 * 4**-0.5).all()
    torch.nn.init.normal_(mixer.in_proj.bias)  # Linear's init is small: make it count
    x = torch.randn(2, 11, 32)
    y = mixer(x)
    ref = MambaMixer(32, d_state=4, dt_rank=4, conv_backend="torch", **opts)
    ref.load_state_dict(mixer.state_dict())
    torch.testing.assert_close(y, ref(x), atol=1e-5, rtol=1e-5)
    state = mixer.init_state(2)
    a, state = mixer.forward_chunk(x[:, :4], state)
    b, _ = mixer.forward_chunk(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), y, atol=1e-5, rtol=1e-5)
    random = MambaMixer(32, d_state=4, dt_rank=4, dt_scale=0.5)
    assert random.dt_proj.weight.abs().max() <= 0.5 * 4**-0.5
    hosts = ((CrossMambaMixer, (16,)), (SBCrossMambaBlock, (1, 16)), (SBMambaBlock, (1, 16)),
             (CausalCrossMambaLayer, (16,)))  # fmt: skip
    for cls, args in hosts:  # the subclasses and the blocks pass the options through
        keys = list(cls(*args, **SMALL, **opts).state_dict())
        assert not any(k.endswith("conv1d.bias") for k in keys), cls
        assert any(k.endswith("in_proj.bias") for k in keys), cls
    with pytest.raises(ValueError, match="dt_init must be one of"):
        MambaMixer(16, dt_init="normal")


def test_crossmamba_query_comes_from_the_clue():
    torch.manual_seed(0)
    mixer = CrossMambaMixer(16, **SMALL)
    x, clue = torch.randn(2, 20, 16), torch.randn(2, 20, 16, requires_grad=True)
    inputs = mixer.ssm_inputs(x, clue)
    torch.testing.assert_close(inputs["C"], mixer.q_proj(mixer.in_proj_q(clue)).transpose(1, 2))
    y = mixer(x, clue)
    assert not torch.allclose(y, mixer(x, torch.randn(2, 20, 16)))
    y.sum().backward()
    assert clue.grad.abs().sum() > 0


def test_crossmamba_output_is_hidden_attention_times_value():
    torch.manual_seed(0)
    mixer = CrossMambaMixer(8, **SMALL)
    x, clue = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    inp = mixer.ssm_inputs(x, clue)
    y = selective_scan(**dict(inp, z=None), backend="ref")
    alpha = mixer.hidden_attention(x, clue)
    assert alpha.shape == (2, mixer.d_inner, 10, 10)
    u = inp["u"].double()
    y_attn = torch.einsum("bdts,bds->bdt", alpha, u) + inp["D"].double()[:, None] * u
    torch.testing.assert_close(y_attn.float(), y, rtol=1e-5, atol=1e-5)


def _padding_case(model, call):
    torch.manual_seed(0)
    x = torch.randn(2, 30, 16)
    clue = torch.randn(2, 30, 16)
    lengths = torch.tensor([1.0, 0.6])
    full = call(model, x, clue, lengths)
    alone = call(model, x[1:, :18], clue[1:, :18], None)
    torch.testing.assert_close(full[1:, :18], alone, rtol=1e-4, atol=1e-5)
    return full


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_is_inert_in_sbmamba(bidirectional):
    model = SBMambaBlock(2, 16, bidirectional=bidirectional, **SMALL)
    _padding_case(model, lambda m, x, c, lens: m(x, lengths=lens))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_is_inert_in_sbcrossmamba(bidirectional):
    model = SBCrossMambaBlock(2, 16, bidirectional=bidirectional, **SMALL)
    _padding_case(model, lambda m, x, c, lens: m(x, c, lengths=lens))


def test_without_mask_padding_leaks_backwards():
    """The padding test above can fail: unmasked, padded frames change the valid part."""
    torch.manual_seed(0)
    model = SBMambaBlock(1, 16, **SMALL)
    x = torch.randn(1, 18, 16)
    x_padded = torch.cat([x, torch.randn(1, 12, 16)], dim=1)
    assert not torch.allclose(model(x_padded)[:, :18], model(x), atol=1e-4)
    masked = model(x_padded, lengths=torch.tensor([18 / 30]))[:, :18]
    torch.testing.assert_close(masked, model(x), rtol=1e-4, atol=1e-5)


def test_mamba_step_by_step_equals_forward():
    torch.manual_seed(0)
    mixer = MambaMixer(16, **SMALL)
    x = torch.randn(2, 25, 16)
    state = mixer.init_state(2)
    steps = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), mixer(x), rtol=1e-4, atol=1e-5)
    assert state[0].shape == (2, 32, 3) and state[1].shape == (2, 32, 4)  # conv history: d_conv - 1


def test_crossmamba_step_by_step_equals_forward():
    torch.manual_seed(0)
    block = CrossMambaBlock(16, d_clue=8, **SMALL)
    x, clue = torch.randn(2, 25, 16), torch.randn(2, 25, 8)
    state = block.mixer.init_state(2)
    steps = []
    for t in range(x.shape[1]):
        y_t, state = block.step(x[:, t], clue[:, t], state)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), block(x, clue), rtol=1e-4, atol=1e-5)


def test_bidirectional_equals_manual_flip_and_sum():
    torch.manual_seed(0)
    bi = BiCrossMambaBlock(16, **SMALL)
    x, clue = torch.randn(2, 20, 16), torch.randn(2, 20, 16)
    manual = bi.forward_block(x, clue) + bi.backward_block(x.flip(1), clue.flip(1)).flip(1)
    torch.testing.assert_close(bi(x, clue), manual)
    bi_self = BiMambaBlock(16, merge="mean", **SMALL)
    manual = bi_self.forward_block(x) + bi_self.backward_block(x.flip(1)).flip(1)
    torch.testing.assert_close(bi_self(x), manual / 2)


def test_unidirectional_is_causal_and_bidirectional_is_not():
    torch.manual_seed(0)
    x = torch.randn(1, 20, 16)
    x2 = x.clone()
    x2[:, 15:] += 1.0
    uni, bi = MambaBlock(16, **SMALL), BiMambaBlock(16, **SMALL)
    torch.testing.assert_close(uni(x)[:, :15], uni(x2)[:, :15])
    assert not torch.allclose(bi(x)[:, :15], bi(x2)[:, :15])


def test_clue_length_mismatch_is_a_clear_error_unless_interpolated():
    fusion = SBCrossMambaBlock(1, 16, **SMALL)
    x, clue = torch.randn(2, 40, 16), torch.randn(2, 10, 16)
    with pytest.raises(ValueError, match="clue has 10 frames but the mixture has 40"):
        fusion(x, clue)
    with pytest.raises(ValueError, match="clue has 10 frames"):
        CrossMambaMixer(16, **SMALL)(x, clue)
    fusion.interpolate_clue = True
    assert fusion(x, clue).shape == (2, 40, 16)
    up = align_clue(torch.arange(3.0).view(1, 3, 1), 5, interpolate=True)
    torch.testing.assert_close(up.flatten(), torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]))


def test_bad_lengths_are_rejected():
    with pytest.raises(ValueError, match="relative lengths"):
        SBMambaBlock(1, 16, **SMALL)(torch.randn(2, 10, 16), lengths=torch.tensor([1.0, 0.0]))


def test_dual_path_model_with_sbmamba_runs_forward_and_backward():
    torch.manual_seed(0)
    N = 16
    encoder, decoder = Encoder(kernel_size=16, out_channels=N), Decoder(N, 1, 16, stride=8)
    model = Dual_Path_Model(
        in_channels=N,
        out_channels=N,
        intra_model=SBMambaBlock(1, N, **SMALL),
        inter_model=SBMambaBlock(1, N, **SMALL),
        num_layers=1,
        K=25,
        num_spks=1,
        skip_around_intra=True,
    )
    mix = torch.randn(2, 1600)
    feats = encoder(mix)
    est = decoder(feats * model(feats)[0]).squeeze(-1)
    assert est.shape[0] == 2 and torch.isfinite(est).all()
    est.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    mamba_grads = [p.grad.abs().sum() for p in model.dual_mdl[0].intra_mdl.parameters()]
    assert sum(mamba_grads) > 0


def test_layers_are_finite_under_bf16_autocast_on_long_input():
    torch.manual_seed(0)
    fusion = SBCrossMambaBlock(1, 16, **SMALL)
    x, clue = torch.randn(1, 4000, 16), torch.randn(1, 4000, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fusion(x, clue)
    assert torch.isfinite(y).all()
